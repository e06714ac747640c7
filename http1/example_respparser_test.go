package http1_test

import (
	"fmt"

	"github.com/warrenhq/warren/http1"
)

func ExampleResponseParser() {
	var p http1.ResponseParser // one per client connection
	var resp http1.Response

	// The first read holds part of the head: Parse asks for more.
	in := []byte("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nTransfer-")
	n, err := p.Parse(in, "GET", &resp, nil)
	fmt.Println(n, err)

	// The next read is appended and the scan resumes. The body follows the
	// head in the same input.
	in = append(in, "Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"...)
	n, err = p.Parse(in, "GET", &resp, nil)
	fmt.Println(n, err)
	fmt.Println(resp.StatusCode, resp.Framing, resp.KeepAlive, resp.Close)

	// Body delimits the body, one piece per call, without copying it.
	for in = in[n:]; p.InBody(); {
		n, data, done, err := p.Body(in)
		if err != nil {
			fmt.Println(err)
			return
		}
		if len(data) > 0 {
			fmt.Printf("%q\n", data)
		}
		in = in[n:]
		if done {
			fmt.Println("done")
		}
	}

	// A response to HEAD has no body, whatever its Content-Length says.
	in = []byte("HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nServer: warren\r\n\r\n")
	n, err = p.Parse(in, "HEAD", &resp, nil)
	fmt.Println(n, err, resp.Framing, resp.ContentLength, string(resp.Header("server")))
	// Output:
	// 0 <nil>
	// 70 <nil>
	// 200 chunked 5s false
	// "hello"
	// " world"
	// done
	// 57 <nil> none 1024 warren
}

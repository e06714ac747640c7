package http1_test

import (
	"fmt"

	"github.com/warrenhq/warren/http1"
)

func ExampleParser_Parse() {
	var p http1.Parser
	var req http1.Request // reused for every request on the connection

	// The first read holds part of the head: Parse asks for more.
	in := []byte("GET /hello?name=warren HTTP/1.1\r\nHost: exa")
	n, err := p.Parse(in, &req, nil)
	fmt.Println(n, err)

	// The engine appends the next read and calls again; the scan resumes.
	in = append(in, "mple.com\r\nConnection: close\r\n\r\n"...)
	n, err = p.Parse(in, &req, nil)
	fmt.Println(n, err)
	fmt.Printf("%s %s query=%s host=%s close=%t\n", req.Method, req.Path, req.RawQuery, req.Host, req.Close)

	// A malformed request carries the status to answer with.
	_, err = p.Parse([]byte("GET / HTTP/2.0\r\n\r\n"), &req, nil)
	fmt.Println(err.(*http1.Error).Status, err)
	// Output:
	// 0 <nil>
	// 73 <nil>
	// GET /hello query=name=warren host=example.com close=true
	// 505 http1: HTTP version not supported
}

package http1_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
)

// serve starts an engine with an HTTP server answering with h on a free
// loopback port, and returns its address and a function that stops it.
func serve(cfg http1.Config, h http1.Handler) (addr string, stop func()) {
	eng, err := engine.New(engine.Config{}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	s, err := http1.NewServer(eng, cfg, h)
	if err != nil {
		panic(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return ln.Addr().String(), func() { eng.Shutdown(context.Background()) }
}

func ExampleNewServer() {
	r := http1.NewRouter()
	// A handler that never blocks runs on the event loop.
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) {
		c.WriteString("hello")
	}))
	// Others run on the worker pool and may block.
	r.HandleFunc("GET /devices/{id}", func(c *http1.Ctx) {
		time.Sleep(time.Millisecond) // a database lookup, say
		c.SetHeader("Content-Type", "application/json")
		fmt.Fprintf(c, `{"id":%q}`, c.Param("id"))
	})
	// One engine carries every protocol: start it without a listener,
	// attach the HTTP server, and open its listener.
	eng, err := engine.New(engine.Config{}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	defer eng.Shutdown(context.Background())
	s, err := http1.NewServer(eng, http1.Config{IdleTimeout: 30 * time.Second}, r)
	if err != nil {
		panic(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}

	resp, _ := http.Get("http://" + ln.Addr().String() + "/devices/thermo-7")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(b))
	// Output: 200 {"id":"thermo-7"}
}

func ExampleAdapt() {
	// An existing net/http handler, served by warren.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /legacy", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "legacy %s", r.URL.Query().Get("v"))
	})
	r := http1.NewRouter()
	r.Handle("/{path...}", http1.Adapt(mux)) // any method, any path not matched below
	r.Handle("GET /fast", http1.InlineFunc(func(c *http1.Ctx) { c.WriteString("native") }))
	addr, stop := serve(http1.Config{}, r)
	defer stop()
	for _, p := range []string{"/legacy?v=1", "/fast"} {
		resp, _ := http.Get("http://" + addr + p)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(b))
	}
	// Output:
	// legacy 1
	// native
}

func ExampleRouter_Use() {
	r := http1.NewRouter()
	logged := func(next http1.Handler) http1.Handler {
		return http1.HandlerFunc(func(c *http1.Ctx) {
			next.ServeHTTP1(c)
			fmt.Printf("%s %s -> %d\n", c.Method, c.Path, c.Status())
		})
	}
	r.Use(logged)
	r.HandleFunc("GET /ping", func(c *http1.Ctx) { c.WriteString("pong") })
	addr, stop := serve(http1.Config{}, r)
	defer stop()
	resp, _ := http.Get("http://" + addr + "/ping")
	io.ReadAll(resp.Body)
	resp.Body.Close()
	// Output: GET /ping -> 200
}

func ExampleServer_Overload() {
	eng, _ := engine.New(engine.Config{}, nil)
	s, _ := http1.NewServer(eng, http1.Config{
		IdleTimeout: time.Minute,
		Overload:    http1.Overload{MemoryLimit: 8 << 30, MinIdleTimeout: 5 * time.Second},
	}, http1.NewRouter())
	st := s.Overload()
	fmt.Println(st.KeepAlive, st.Level())
	// Output: true 0
}

func ExampleStreamBody() {
	r := http1.NewRouter()
	// Uploads of up to 1 GiB stream through the handler as they arrive;
	// every other route keeps Limits.MaxBodyBytes and gets its body whole.
	r.Handle("PUT /firmware/{name}", http1.StreamBody(http1.HandlerFunc(func(c *http1.Ctx) {
		n, err := io.Copy(io.Discard, c.BodyReader()) // a file, say
		if err != nil {
			return // the server answers with the error's status and closes
		}
		fmt.Fprintf(c, "stored %s: %d bytes", c.Param("name"), n)
	}), 1<<30))
	addr, stop := serve(http1.Config{}, r)
	defer stop()
	req, _ := http.NewRequest("PUT", "http://"+addr+"/firmware/v2.bin", strings.NewReader(strings.Repeat("x", 3<<20)))
	resp, _ := http.DefaultClient.Do(req)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(b))
	// Output: stored v2.bin: 3145728 bytes
}

func ExampleCtx_BodyReader() {
	r := http1.NewRouter()
	r.HandleFunc("POST /lines", func(c *http1.Ctx) {
		// Outside StreamBody routes the body is already in memory;
		// BodyReader reads it like any stream.
		sc := bufio.NewScanner(c.BodyReader())
		n := 0
		for sc.Scan() {
			n++
		}
		fmt.Fprintf(c, "%d lines", n)
	})
	addr, stop := serve(http1.Config{}, r)
	defer stop()
	resp, _ := http.Post("http://"+addr+"/lines", "text/plain", strings.NewReader("a\nb\nc\n"))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(b))
	// Output: 3 lines
}

// A handler that knows the length of the representation a GET would
// return (a file's size, a backend's Content-Length) declares it for HEAD,
// where no body is written.
func ExampleCtx_SetHeadLength() {
	addr, stop := serve(http1.Config{}, http1.InlineFunc(func(c *http1.Ctx) {
		c.SetHeader("Content-Type", "application/octet-stream")
		c.SetHeadLength(1 << 20) // ignored but for HEAD
		if string(c.Method) != "HEAD" {
			c.WriteString("a megabyte, in real life")
		}
	}))
	defer stop()
	resp, err := http.Head("http://" + addr + "/file")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.ContentLength)
	// Output: 200 1048576
}

// A handler sends 103 Early Hints while it prepares the page, so that a
// browser can start fetching what the page needs; once the page is
// streamed, a trailer field carries what is known only at its end.
func ExampleCtx_WriteInterim() {
	addr, stop := serve(http1.Config{}, http1.HandlerFunc(func(c *http1.Ctx) {
		c.WriteInterim(103, []http1.Header{{Name: []byte("Link"), Value: []byte("</app.css>; rel=preload")}})
		c.SetHeader("Trailer", "X-Rows")
		c.Flush() // streamed: chunked, with a trailer section
		c.WriteString("rows...")
		c.SetTrailer("X-Rows", "3")
	}))
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
	all, _ := io.ReadAll(conn)
	for _, line := range strings.Split(string(all), "\r\n") {
		if !strings.HasPrefix(line, "Date:") {
			fmt.Printf("%q\n", line)
		}
	}
	// Output:
	// "HTTP/1.1 103 Early Hints"
	// "Link: </app.css>; rel=preload"
	// ""
	// "HTTP/1.1 200 OK"
	// "Trailer: X-Rows"
	// "Content-Type: text/plain; charset=utf-8"
	// "Transfer-Encoding: chunked"
	// "Connection: close"
	// ""
	// "7"
	// "rows..."
	// "0"
	// "X-Rows: 3"
	// ""
	// ""
}

// A handler whose body's type is unknown (bytes passed on from elsewhere
// without one) sends it without the server's default Content-Type.
func ExampleCtx_OmitContentType() {
	addr, stop := serve(http1.Config{}, http1.InlineFunc(func(c *http1.Ctx) {
		c.OmitContentType()
		c.WriteString("\x00\x01 of some kind")
	}))
	defer stop()
	resp, err := http.Get("http://" + addr + "/blob")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Printf("%q %d\n", resp.Header.Get("Content-Type"), resp.ContentLength)
	// Output: "" 15
}

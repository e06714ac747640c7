package http1_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/warrenhq/warren/http1"
)

// A request answered when a reply arrives from elsewhere — a device's
// acknowledgement, a message bus; a timer here — holds no worker and does
// not block the loop while it waits. The handler runs on the loop, detaches
// and returns; the reply's callback writes the response and finishes it.
func ExampleCtx_Detach() {
	r := http1.NewRouter()
	r.Handle("GET /ask/{q}", http1.InlineFunc(func(c *http1.Ctx) {
		d, err := c.Detach()
		if err != nil {
			c.SetStatus(500)
			return
		}
		reply := time.AfterFunc(20*time.Millisecond, func() {
			c.WriteString("the answer to " + c.Param("q") + "\n")
			d.Finish()
		})
		// A client that leaves ends the request's context: stop waiting
		// (context.AfterFunc: no goroutine waits for it).
		context.AfterFunc(c.Context(), func() {
			if reply.Stop() {
				d.Finish()
			}
		})
	}))
	addr, stop := serve(http1.Config{}, r)
	defer stop()
	resp, err := http.Get("http://" + addr + "/ask/everything")
	if err != nil {
		panic(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(b))
	// Output: 200 the answer to everything
}

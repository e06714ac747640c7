package http1_test

import (
	"fmt"
	"strings"

	"github.com/warrenhq/warren/http1"
)

// A pool of parsed requests can keep only small ones: Spilled says a
// request's field storage grew past its 32 inline fields.
func ExampleRequest_Spilled() {
	var p http1.Parser
	var req http1.Request
	head := "GET / HTTP/1.1\r\nHost: example.com\r\n" + strings.Repeat("X-Trace: 1\r\n", 40) + "\r\n"
	if _, err := p.Parse([]byte(head), &req, &http1.Limits{MaxHeaders: 100}); err != nil {
		fmt.Println(err)
		return
	}
	req.Reset()
	fmt.Println("keep on a free list:", !req.Spilled())
	// Output: keep on a free list: false
}

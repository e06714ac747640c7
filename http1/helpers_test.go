package http1

import (
	"fmt"
	"strings"
)

// outcome is everything Parse reports, rendered so that two outcomes from
// input at different addresses compare equal when they mean the same.
type outcome struct {
	n   int
	err error
	req string // snapshot of the request; "" unless n > 0
}

func (o outcome) String() string {
	return fmt.Sprintf("n=%d err=%v req={%s}", o.n, o.err, o.req)
}

// snapshot renders every field of r.
func snapshot(r *Request) string {
	var b strings.Builder
	q := func(name string, v []byte) {
		if v == nil {
			fmt.Fprintf(&b, "%s=nil ", name)
		} else {
			fmt.Fprintf(&b, "%s=%q ", name, v)
		}
	}
	q("method", r.Method)
	q("target", r.Target)
	q("path", r.Path)
	q("query", r.RawQuery)
	fmt.Fprintf(&b, "proto=%d.%d ", r.ProtoMajor, r.ProtoMinor)
	q("host", r.Host)
	fmt.Fprintf(&b, "cl=%d chunked=%t close=%t expect100=%t ", r.ContentLength, r.Chunked, r.Close, r.Expect100)
	q("upgrade", r.Upgrade)
	fmt.Fprintf(&b, "headerlen=%d raw=%q headers=[", r.HeaderLen, r.Raw())
	for _, h := range r.Headers() {
		fmt.Fprintf(&b, "%q:%q ", h.Name, h.Value)
	}
	b.WriteString("]")
	return b.String()
}

// clone returns a copy of b at a new address, with spare capacity so that
// a missing bound would be noticed.
func clone(b []byte) []byte {
	c := make([]byte, len(b), len(b)+16)
	copy(c, b)
	return c
}

// parseWhole parses in with a fresh Parser and Request.
func parseWhole(in []byte, lim *Limits) outcome {
	var p Parser
	var req Request
	return result(p.Parse(clone(in), &req, lim))(&req)
}

func result(n int, err error) func(*Request) outcome {
	return func(r *Request) outcome {
		o := outcome{n: n, err: err}
		if n > 0 {
			o.req = snapshot(r)
		}
		return o
	}
}

// parseSplit feeds in[:k] and then all of in, each at its own address.
// It returns the outcome of the first call that did not report (0, nil),
// and whether that was the first call.
func parseSplit(in []byte, k int, lim *Limits) (outcome, bool) {
	var p Parser
	var req Request
	o := result(p.Parse(clone(in[:k]), &req, lim))(&req)
	if o.n != 0 || o.err != nil {
		return o, true
	}
	return result(p.Parse(clone(in), &req, lim))(&req), false
}

// parseTrickle feeds in one byte at a time, each prefix at a new address,
// reusing one Request, and returns the first outcome other than (0, nil)
// (or the last one) with the number of bytes fed by then.
func parseTrickle(in []byte, lim *Limits) (outcome, int, *Parser) {
	var p Parser
	var req Request
	buf := make([]byte, 0, 1)
	for k := 1; k <= len(in); k++ {
		// Move to a new address now and then, as an engine growing its
		// buffer would, and keep appending in place otherwise.
		if k&(k-1) == 0 {
			buf = append(make([]byte, 0, 2*k), buf...)
		}
		buf = append(buf, in[k-1])
		o := result(p.Parse(buf, &req, lim))(&req)
		if o.n != 0 || o.err != nil || k == len(in) {
			return o, k, &p
		}
	}
	return outcome{}, 0, &p
}

// splitPoints returns every offset 0..n for small inputs, and for large ones
// the offsets near both ends plus an even sample of the rest, so that the
// split tests stay quick on 64 KiB inputs.
func splitPoints(n int) []int {
	const all = 2048
	var ks []int
	stride := 1
	if n > all {
		stride = n / all
	}
	for k := 0; k <= n; k++ {
		if k < 300 || n-k < 300 || k%stride == 0 {
			ks = append(ks, k)
		}
	}
	return ks
}

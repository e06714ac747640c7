package loadgen

import (
	"errors"

	"github.com/warrenhq/warren/http1"
)

// errUnexpected is a 101 (Switching Protocols) to a plain HTTP request;
// like the http1 parser's errors, it counts as a protocol error.
var errUnexpected = errors.New("loadgen: unexpected response")

// respLimits bounds response heads as http1 does by default; bodies are
// counted and dropped, so their size is not bounded.
var respLimits = &http1.Limits{MaxBodyBytes: -1}

// respParser frames the responses on one connection for a client that only
// needs the framing, the status and whether the server will close: an
// http1.ResponseParser, which holds no buffer, and the two facts about the
// last response that the handler reads. It is fed, like an engine handler,
// all unconsumed input each time; it consumes body bytes as they arrive and
// a head only once it is whole, and costs 40 bytes per connection.
type respParser struct {
	p      http1.ResponseParser
	status uint16 // status of the last response parsed
	close  bool   // the last response said the server will close
}

// reset prepares p for a new connection.
func (p *respParser) reset() {
	p.p.Reset()
	p.status, p.close = 0, false
}

// parse consumes input from the start of in. It returns the bytes consumed
// and done = true when a final response completed with those bytes;
// p.status and p.close describe it. Call it again with the rest of the
// input after a completion. With done = false and no error, all of in that
// can be consumed has been, and more input is needed.
func (p *respParser) parse(in []byte) (n int, done bool, err error) {
	for {
		if !p.p.InBody() {
			var resp http1.Response // 184 bytes on the stack: field offsets, no header views
			m, err := p.p.Parse(in[n:], "GET", &resp, respLimits)
			if err != nil || m == 0 {
				return n, false, err
			}
			n += m
			p.status, p.close = uint16(resp.StatusCode), resp.Close
			switch {
			case resp.StatusCode == 101:
				return n, false, errUnexpected
			case resp.StatusCode < 200:
				continue // interim response: the final one follows
			case resp.Framing == http1.FramingNone:
				return n, true, nil
			}
		}
		m, _, done, err := p.p.Body(in[n:])
		n += m
		if err != nil || done {
			return n, done, err
		}
		if m == 0 {
			return n, false, nil
		}
	}
}

// eof tells the parser the connection ended; it reports whether that
// completed a response delimited by the end of the connection.
func (p *respParser) eof() bool {
	done, _ := p.p.EOF()
	return done
}

package loadgen

import (
	"bytes"
	"errors"
)

// Response parsing errors; all count as protocol errors.
var (
	errHeadTooLong  = errors.New("loadgen: response head too long")
	errStatusLine   = errors.New("loadgen: malformed status line")
	errHeader       = errors.New("loadgen: malformed response header")
	errChunk        = errors.New("loadgen: malformed chunk")
	errChunkLine    = errors.New("loadgen: chunk line too long")
	errContentLen   = errors.New("loadgen: bad Content-Length")
	errUnexpected   = errors.New("loadgen: unexpected response")
	errBodyOverflow = errors.New("loadgen: chunk size overflows")
)

const (
	maxHeadBytes = 64 << 10
	maxLineBytes = 4 << 10
)

// Parser states.
const (
	rsHead      uint8 = iota // waiting for a complete status line and header section
	rsBody                   // Content-Length body: remain bytes left
	rsChunkSize              // waiting for a chunk-size line
	rsChunkData              // chunk data: remain bytes left
	rsChunkCRLF              // the CRLF after chunk data
	rsTrailer                // trailer fields until an empty line
	rsUntilEOF               // body delimited by the end of the connection
)

// respParser is an incremental HTTP/1.1 response parser for a client that
// only needs framing, the status and whether the server will close. It is
// fed, like an engine handler, all unconsumed input each time; it consumes
// body bytes as they arrive and a head or chunk line only once it is whole,
// remembering how far it has scanned so trickled input costs linear time.
// It holds no buffer: 16 bytes of state per connection.
type respParser struct {
	remain int64  // body or chunk bytes left
	scan   int32  // bytes of the pending head or line already scanned
	status uint16 // status of the response being parsed
	state  uint8
	close  bool // the response being parsed (or the last one) said Connection: close
}

// reset prepares p for a new connection.
func (p *respParser) reset() { *p = respParser{} }

// parse consumes input from the start of in. It returns the bytes
// consumed and done = true when a response completed with those bytes;
// p.status and p.close describe it. Call it again with the rest of the
// input after a completion. With done = false and no error, all of in
// that can be consumed has been, and more input is needed.
func (p *respParser) parse(in []byte) (n int, done bool, err error) {
	for {
		switch p.state {
		case rsHead:
			end, ok := p.findBlankLine(in[n:])
			if !ok {
				if len(in)-n > maxHeadBytes {
					return n, false, errHeadTooLong
				}
				return n, false, nil
			}
			head := in[n : n+end]
			if err := p.parseHead(head); err != nil {
				return n, false, err
			}
			n += end
			p.scan = 0
			switch {
			case p.status >= 100 && p.status < 200:
				if p.status == 101 {
					return n, false, errUnexpected
				}
				continue // interim response: the final one follows
			case p.status == 204 || p.status == 304:
				p.state = rsHead
				return n, true, nil
			case p.state == rsBody && p.remain == 0:
				p.state = rsHead
				return n, true, nil
			}
		case rsBody, rsChunkData:
			take := min(int64(len(in)-n), p.remain)
			n += int(take)
			p.remain -= take
			if p.remain > 0 {
				return n, false, nil
			}
			if p.state == rsChunkData {
				p.state = rsChunkCRLF
				continue
			}
			p.state = rsHead
			return n, true, nil
		case rsChunkCRLF:
			if len(in)-n < 2 {
				return n, false, nil
			}
			if in[n] != '\r' || in[n+1] != '\n' {
				return n, false, errChunk
			}
			n += 2
			p.state = rsChunkSize
		case rsChunkSize:
			line, err := p.line(in[n:])
			if line == nil || err != nil {
				return n, false, err
			}
			size, err := parseChunkSize(line)
			if err != nil {
				return n, false, err
			}
			n += len(line)
			if size == 0 {
				p.state = rsTrailer
				continue
			}
			p.state, p.remain = rsChunkData, size
		case rsTrailer:
			line, err := p.line(in[n:])
			if line == nil || err != nil {
				return n, false, err
			}
			n += len(line)
			if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
				p.state = rsHead
				return n, true, nil
			}
		case rsUntilEOF:
			return len(in), false, nil
		}
	}
}

// eof tells the parser the connection ended; it reports whether that
// completed a response delimited by the end of the connection.
func (p *respParser) eof() bool {
	if p.state == rsUntilEOF {
		p.state = rsHead
		return true
	}
	return false
}

// idle reports whether p is between responses.
func (p *respParser) idle() bool { return p.state == rsHead && p.scan == 0 }

// findBlankLine looks for the end of a header section (an empty line, CRLF
// or bare LF) in in, resuming where the previous call stopped, and returns
// the length of the section including it.
func (p *respParser) findBlankLine(in []byte) (int, bool) {
	i := int(p.scan)
	for {
		j := bytes.IndexByte(in[i:], '\n')
		if j < 0 {
			p.scan = int32(max(len(in)-2, 0))
			return 0, false
		}
		k := i + j // index of this '\n'
		// The line before it is empty if the previous byte is '\n', or
		// "\n\r".
		if k >= 1 && in[k-1] == '\n' || k >= 2 && in[k-1] == '\r' && in[k-2] == '\n' {
			return k + 1, true
		}
		i = k + 1
	}
}

// parseHead parses a complete status line and header section and sets the
// state for the body.
func (p *respParser) parseHead(head []byte) error {
	line, rest := cutLine(head)
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return errStatusLine
	}
	code := 0
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return errStatusLine
		}
		code = code*10 + int(b-'0')
	}
	if len(line) > 12 && line[12] != ' ' {
		return errStatusLine
	}
	p.status = uint16(code)
	http10 := line[7] == '0' // HTTP/1.0 closes unless it says keep-alive
	closeHdr, keepAlive := false, false
	contentLength := int64(-1)
	chunked := false
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errHeader
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			v, ok := parseDecimal(value)
			if !ok || contentLength >= 0 && v != contentLength {
				return errContentLen
			}
			contentLength = v
		case asciiEqualFold(name, "transfer-encoding"):
			if hasToken(value, "chunked") {
				chunked = true
			}
		case asciiEqualFold(name, "connection"):
			if hasToken(value, "close") {
				closeHdr = true
			}
			if hasToken(value, "keep-alive") {
				keepAlive = true
			}
		}
	}
	p.close = closeHdr || http10 && !keepAlive
	switch {
	case p.status < 200 || p.status == 204 || p.status == 304:
		p.state = rsHead
	case chunked:
		p.state = rsChunkSize
	case contentLength >= 0:
		p.state, p.remain = rsBody, contentLength
	default:
		p.state = rsUntilEOF
		p.close = true
	}
	return nil
}

// cutLine splits b after its first line, dropping the line end.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// parseChunkSize parses "HEX[;ext]\r\n".
func parseChunkSize(line []byte) (int64, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, errChunk
	}
	line = line[:len(line)-2]
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 {
		return 0, errChunk
	}
	var v int64
	for _, b := range line {
		var d byte
		switch {
		case b >= '0' && b <= '9':
			d = b - '0'
		case b >= 'a' && b <= 'f':
			d = b - 'a' + 10
		case b >= 'A' && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, errChunk
		}
		if v > (1<<62)>>4 {
			return 0, errBodyOverflow
		}
		v = v<<4 | int64(d)
	}
	return v, nil
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// hasToken reports whether the comma-separated list v holds token,
// ignoring ASCII case and spaces.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			elem, v = v, nil
		}
		if asciiEqualFold(bytes.TrimSpace(elem), token) {
			return true
		}
	}
	return false
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// line returns the line at the start of rest, through its '\n', or nil
// while it is incomplete; it remembers how far it has scanned.
func (p *respParser) line(rest []byte) ([]byte, error) {
	i := bytes.IndexByte(rest[p.scan:], '\n')
	if i < 0 {
		if len(rest) > maxLineBytes {
			return nil, errChunkLine
		}
		p.scan = int32(len(rest))
		return nil, nil
	}
	line := rest[:int(p.scan)+i+1]
	p.scan = 0
	return line, nil
}

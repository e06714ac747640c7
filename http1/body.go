package http1

import "bytes"

// maxChunkSize is the largest chunk size accepted, 2^62, well clear of
// int64 overflow when added to a body length.
const maxChunkSize = 1 << 62

// maxChunkLine bounds a chunk-size line, extensions included, in bytes.
const maxChunkLine = 4 << 10

// maxChunkOverhead bounds the framing bytes (size lines and CRLFs) a chunked
// body may carry beyond a small allowance per chunk and per data byte, as
// net/http does against bodies made of tiny chunks with long extensions.
const maxChunkOverhead = 16 << 10

// ChunkedReader decodes a chunked message body (RFC 9112 §7.1)
// incrementally, without copying the data: a request's, or a response's for
// ResponseParser. The zero value is ready to read
// a body under the default limits; Reset prepares it for another body or
// other limits. A ChunkedReader belongs to one connection; it is not safe
// for concurrent use.
//
// Chunk extensions are checked and ignored. Trailer fields are checked
// and kept, available from Trailers once the body is done. Chunked framing
// must use CRLF line ends; a bare LF is an error.
type ChunkedReader struct {
	lim limits // zero fields: Reset not called, use the defaults

	state    uint8
	digits   int   // hex digits of the size being read
	line     int   // bytes of the chunk-size line so far
	size     int64 // size being read, then bytes left in the chunk
	total    int64 // data bytes so far
	overhead int64 // framing bytes beyond the allowance; see maxChunkOverhead

	fields   int      // trailer fields started
	tbuf     []byte   // trailer section as received, without the final CRLF
	trailers []Header // views into tbuf, set when done
}

// Chunked body decoder states.
const (
	chunkSize         = iota // in the hex chunk size
	chunkSizeWS              // whitespace after the size
	chunkExt                 // in chunk extensions
	chunkSizeLF              // after the CR ending the chunk-size line
	chunkData                // in chunk data
	chunkDataCR              // expecting the CR after chunk data
	chunkDataLF              // expecting the LF after chunk data
	chunkTrailer             // at the start of a trailer line
	chunkTrailerName         // in a trailer field name
	chunkTrailerValue        // in a trailer field value
	chunkTrailerLF           // after the CR ending a trailer field
	chunkEndLF               // after the CR of the final empty line
	chunkDone                // the body is complete
)

// Reset prepares r to read a new body under lim, which may be nil for the
// defaults. It keeps the memory used for trailers.
func (r *ChunkedReader) Reset(lim *Limits) {
	*r = ChunkedReader{lim: lim.resolve(), tbuf: r.tbuf[:0], trailers: r.trailers[:0]}
}

func (r *ChunkedReader) limits() limits {
	if r.lim.headerBytes == 0 {
		return (*Limits)(nil).resolve()
	}
	return r.lim
}

// Next decodes the chunked body at the start of in. It returns how many
// bytes of in it consumed, a piece of body data, which is a view into
// in[:consumed], and whether the body, trailer section included, is
// complete.
//
// Next returns at most one piece of data per call: the caller calls it again
// with in[consumed:] until it reports done or consumes nothing, which means
// it needs more input; the bytes it did not consume must be passed again,
// with more appended. However the input is split across calls, the data and
// the outcome are the same. After done, Next consumes nothing and returns
// done again.
//
// Malformed framing yields an *Error with status 400, a body over
// Limits.MaxBodyBytes 413 (refused as soon as a chunk size would exceed it,
// before its data arrives), and a trailer section over the header limits
// 431.
func (r *ChunkedReader) Next(in []byte) (consumed int, data []byte, done bool, err error) {
	if r.state == chunkDone {
		return 0, nil, true, nil
	}
	i := 0
	for i < len(in) {
		c := in[i]
		prev := r.state
		switch prev {
		case chunkSize:
			if d := unhex(c); d >= 0 {
				if r.size > maxChunkSize>>4 {
					return 0, nil, false, ErrBadChunkSize
				}
				r.size = r.size<<4 | int64(d)
				if r.size > maxChunkSize {
					return 0, nil, false, ErrBadChunkSize
				}
				r.digits++
				break
			}
			if r.digits == 0 {
				return 0, nil, false, ErrBadChunkSize
			}
			if e := r.endSize(c); e != nil {
				return 0, nil, false, e
			}
		case chunkSizeWS:
			if c != ' ' && c != '\t' {
				if e := r.endSize(c); e != nil {
					return 0, nil, false, e
				}
			}
		case chunkExt:
			// Extensions are ignored; "=", quoted strings and all are
			// visible characters, so only controls need refusing.
			if c == '\r' {
				r.state = chunkSizeLF
			} else if !isValue[c] {
				if c == '\n' {
					return 0, nil, false, ErrBadChunkSize
				}
				return 0, nil, false, ErrBadChunkExtension
			}
		case chunkSizeLF:
			if c != '\n' {
				return 0, nil, false, ErrBareCR
			}
			if e := r.startChunk(); e != nil {
				return 0, nil, false, e
			}
			i++
			continue // startChunk reset the line counter
		case chunkData:
			n := len(in) - i
			if int64(n) > r.size {
				n = int(r.size)
			}
			r.size -= int64(n)
			r.total += int64(n)
			if r.size == 0 {
				r.state = chunkDataCR
			}
			return i + n, in[i : i+n], false, nil
		case chunkDataCR:
			if c != '\r' {
				return 0, nil, false, ErrBadChunkData
			}
			r.state = chunkDataLF
		case chunkDataLF:
			if c != '\n' {
				return 0, nil, false, ErrBadChunkData
			}
			r.state = chunkSize
		case chunkTrailer:
			switch {
			case c == '\r':
				r.state = chunkEndLF
				i++
				continue // the final CRLF is not kept
			case isToken[c]:
				r.fields++
				if r.fields > r.limits().headers {
					return 0, nil, false, ErrTrailerTooLarge
				}
				r.state = chunkTrailerName
			default: // including SP and HTAB, obs-fold
				return 0, nil, false, ErrBadTrailer
			}
		case chunkTrailerName:
			if c == ':' {
				r.state = chunkTrailerValue
			} else if !isToken[c] {
				return 0, nil, false, ErrBadTrailer
			}
		case chunkTrailerValue:
			if c == '\r' {
				r.state = chunkTrailerLF
			} else if !isValue[c] {
				return 0, nil, false, ErrBadTrailer
			}
		case chunkTrailerLF:
			if c != '\n' {
				return 0, nil, false, ErrBareCR
			}
			r.state = chunkTrailer
		case chunkEndLF:
			if c != '\n' {
				return 0, nil, false, ErrBareCR
			}
			r.state = chunkDone
			r.splitTrailers()
			return i + 1, nil, true, nil
		}
		// Account for c in the line or trailer section it belongs to.
		if prev >= chunkTrailer && prev <= chunkTrailerLF {
			if len(r.tbuf) >= r.limits().headerBytes {
				return 0, nil, false, ErrTrailerTooLarge
			}
			r.tbuf = append(r.tbuf, c)
		} else if prev <= chunkExt {
			r.line++
			if r.line > maxChunkLine {
				return 0, nil, false, ErrChunkLineTooLong
			}
		}
		i++
	}
	return i, nil, false, nil
}

// endSize handles the byte c that follows the hex digits of a chunk size,
// or whitespace after them.
func (r *ChunkedReader) endSize(c byte) *Error {
	switch c {
	case ' ', '\t': // BWS before extensions; tolerated before CRLF too
		r.state = chunkSizeWS
	case ';':
		r.state = chunkExt
	case '\r':
		r.state = chunkSizeLF
	default:
		return ErrBadChunkSize
	}
	return nil
}

// startChunk acts on a complete chunk-size line.
func (r *ChunkedReader) startChunk() *Error {
	lim := r.limits()
	if lim.bodyBytes >= 0 && r.size > lim.bodyBytes-r.total {
		return ErrBodyTooLarge
	}
	// Allow 16 bytes of framing per chunk and 2 per data byte, as
	// net/http does; past that, framing may only exceed data by 16 KiB.
	r.overhead += int64(r.line+1) + 2 - 16 - 2*r.size
	r.overhead = max(r.overhead, 0)
	if r.overhead > maxChunkOverhead {
		return ErrChunkOverhead
	}
	r.line, r.digits = 0, 0
	if r.size == 0 {
		r.state = chunkTrailer
	} else {
		r.state = chunkData
	}
	return nil
}

// splitTrailers turns tbuf, a sequence of validated "name:value\r\n"
// lines, into trailers.
func (r *ChunkedReader) splitTrailers() {
	r.trailers = r.trailers[:0]
	b := r.tbuf
	for len(b) > 0 {
		end := bytes.IndexByte(b, '\r')
		line := b[:end]
		b = b[end+2:]
		colon := bytes.IndexByte(line, ':')
		r.trailers = append(r.trailers, Header{Name: line[:colon], Value: trimOWS(line[colon+1:])})
	}
}

// Trailers returns the trailer fields once Next has reported done, else nil.
// They are r's own copies, valid until r is reset, and not to be modified.
func (r *ChunkedReader) Trailers() []Header {
	if r.state != chunkDone {
		return nil
	}
	return r.trailers
}

// TrailerBytes returns how many bytes of the trailer section, its final
// CRLF included, Next has consumed so far: zero until the last chunk's
// size line has ended. They are the last bytes Next consumed, so a proxy
// that forwards a chunked body as received can hold them back and send
// the trailer fields it keeps instead (see Trailers).
func (r *ChunkedReader) TrailerBytes() int {
	switch r.state {
	case chunkTrailer, chunkTrailerName, chunkTrailerValue, chunkTrailerLF:
		return len(r.tbuf)
	case chunkEndLF:
		return len(r.tbuf) + 1
	case chunkDone:
		return len(r.tbuf) + 2
	}
	return 0
}

// Len returns the number of body bytes decoded so far.
func (r *ChunkedReader) Len() int64 { return r.total }

// unhex returns the value of the hex digit c, or -1.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// FixedReader delimits a body of known length, as given by Content-Length,
// with the same calling convention as ChunkedReader. The zero value reads an
// empty body. It is not safe for concurrent use.
type FixedReader struct {
	remaining int64
}

// Reset prepares r to read a body of n bytes.
func (r *FixedReader) Reset(n int64) { r.remaining = max(n, 0) }

// Remaining returns the number of body bytes still to come.
func (r *FixedReader) Remaining() int64 { return r.remaining }

// Next returns the part of in that belongs to the body, as a view, and
// whether the body is complete. consumed is len(data); err is always nil
// and is there to match ChunkedReader.Next.
func (r *FixedReader) Next(in []byte) (consumed int, data []byte, done bool, err error) {
	n := len(in)
	if int64(n) > r.remaining {
		n = int(r.remaining)
	}
	r.remaining -= int64(n)
	return n, in[:n], r.remaining == 0, nil
}

package websocket

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
)

// DeflateConfig configures the permessage-deflate extension (RFC 7692).
// The zero value disables it.
type DeflateConfig struct {
	// Enabled makes a server accept a client's permessage-deflate offer
	// and a client send one.
	Enabled bool

	// ServerNoContextTakeover makes the server compress every message on
	// its own, so its compressor comes from a shared pool for the length
	// of one message instead of living as long as the connection. A
	// server asks for it in its response; a client asks for it in its
	// offer. False keeps the compression context across messages, which
	// compresses better but costs much more memory per connection (see
	// the package documentation).
	ServerNoContextTakeover bool

	// ClientNoContextTakeover makes the client compress every message on
	// its own, so the server's decompressor is pooled instead of held per
	// connection. A server that does not set it still agrees when the
	// client offers it.
	ClientNoContextTakeover bool

	// Level is the compression level, from 1 (fastest) to 9 (smallest),
	// -1 for the flate package's default (5) or -2 for Huffman-only
	// compression. Zero and values outside -2..9 mean 1. Higher levels
	// hold more memory with context takeover (see the package
	// documentation).
	Level int
}

// DeflateParams are the permessage-deflate parameters agreed on by a
// handshake. The zero value means context takeover in both directions and
// 32 KiB windows.
type DeflateParams struct {
	// ServerNoContextTakeover: the server compresses each message on its
	// own.
	ServerNoContextTakeover bool
	// ClientNoContextTakeover: the client compresses each message on its
	// own.
	ClientNoContextTakeover bool
	// ServerMaxWindowBits is the base-2 logarithm (8..15) of the window the
	// server compresses with; zero means 15 and leaves the parameter out
	// of the response.
	ServerMaxWindowBits int
	// ClientMaxWindowBits is the base-2 logarithm (8..15) of the window the
	// client compresses with; zero means 15 and leaves the parameter out
	// of the response.
	ClientMaxWindowBits int
}

// ErrBadExtensionResponse is returned by ParseDeflateResponse when the
// server's Sec-WebSocket-Extensions header cannot be accepted; the client
// must fail the connection.
var ErrBadExtensionResponse = errors.New("websocket: invalid Sec-WebSocket-Extensions response")

const extensionName = "permessage-deflate"

// NegotiateDeflate picks the first valid permessage-deflate offer among the
// values of a client's Sec-WebSocket-Extensions header lines (pass each
// line as one argument) and returns the parameters to use and to send
// back with AppendResponse. ok is false when cfg.Enabled is false or no
// offer is acceptable; the server then answers without the extension.
// Invalid offers (unknown or repeated parameters, window bits outside
// 8..15, values where none are allowed) are ignored as RFC 7692 §5
// requires.
func NegotiateDeflate(cfg DeflateConfig, offers ...[]byte) (p DeflateParams, ok bool) {
	if !cfg.Enabled {
		return DeflateParams{}, false
	}
	for _, v := range offers {
		for i := 0; i < len(v); {
			var ext extension
			var good bool
			ext, i, good = nextExtension(v, i)
			if !good || !asciiEqualFold(ext.name, extensionName) {
				continue
			}
			if accepted, good := acceptOffer(&ext, cfg); good {
				return accepted, true
			}
		}
	}
	return DeflateParams{}, false
}

// acceptOffer validates one offer and returns the server's answer to it.
func acceptOffer(ext *extension, cfg DeflateConfig) (DeflateParams, bool) {
	if ext.tooMany {
		return DeflateParams{}, false
	}
	var p DeflateParams
	var seen [4]bool
	for _, prm := range ext.params[:ext.n] {
		switch {
		case asciiEqualFold(prm.name, "server_no_context_takeover"):
			if seen[0] || prm.hasValue {
				return DeflateParams{}, false
			}
			seen[0] = true
			p.ServerNoContextTakeover = true
		case asciiEqualFold(prm.name, "client_no_context_takeover"):
			if seen[1] || prm.hasValue {
				return DeflateParams{}, false
			}
			seen[1] = true
			p.ClientNoContextTakeover = true
		case asciiEqualFold(prm.name, "server_max_window_bits"):
			bits := windowBits(prm)
			if seen[2] || bits == 0 {
				return DeflateParams{}, false
			}
			seen[2] = true
			p.ServerMaxWindowBits = bits
		case asciiEqualFold(prm.name, "client_max_window_bits"):
			// The value is only a hint: this package decompresses any
			// window up to 15 bits, so it never limits the client.
			if seen[3] || prm.hasValue && windowBits(prm) == 0 {
				return DeflateParams{}, false
			}
			seen[3] = true
		default:
			return DeflateParams{}, false
		}
	}
	if cfg.ServerNoContextTakeover {
		p.ServerNoContextTakeover = true
	}
	if cfg.ClientNoContextTakeover {
		p.ClientNoContextTakeover = true
	}
	return p, true
}

// AppendResponse appends the Sec-WebSocket-Extensions value that accepts
// p, such as "permessage-deflate; server_no_context_takeover", to dst.
func (p DeflateParams) AppendResponse(dst []byte) []byte {
	dst = append(dst, extensionName...)
	if p.ServerNoContextTakeover {
		dst = append(dst, "; server_no_context_takeover"...)
	}
	if p.ClientNoContextTakeover {
		dst = append(dst, "; client_no_context_takeover"...)
	}
	if p.ServerMaxWindowBits != 0 {
		dst = append(dst, "; server_max_window_bits="...)
		dst = strconv.AppendInt(dst, int64(p.ServerMaxWindowBits), 10)
	}
	if p.ClientMaxWindowBits != 0 {
		dst = append(dst, "; client_max_window_bits="...)
		dst = strconv.AppendInt(dst, int64(p.ClientMaxWindowBits), 10)
	}
	return dst
}

// String returns the Sec-WebSocket-Extensions value that accepts p.
func (p DeflateParams) String() string { return string(p.AppendResponse(nil)) }

// AppendOffer appends the Sec-WebSocket-Extensions value a client sends to
// offer permessage-deflate with c's settings to dst.
func (c DeflateConfig) AppendOffer(dst []byte) []byte {
	dst = append(dst, extensionName...)
	if c.ServerNoContextTakeover {
		dst = append(dst, "; server_no_context_takeover"...)
	}
	if c.ClientNoContextTakeover {
		dst = append(dst, "; client_no_context_takeover"...)
	}
	return append(dst, "; client_max_window_bits"...)
}

// ParseDeflateResponse reads the Sec-WebSocket-Extensions header lines of
// a server's handshake response to an offer made with AppendOffer. ok is
// false when the server did not accept the extension. A response that
// names another extension, repeats permessage-deflate or carries an
// invalid parameter yields ErrBadExtensionResponse.
func ParseDeflateResponse(values ...[]byte) (p DeflateParams, ok bool, err error) {
	for _, v := range values {
		for i := 0; i < len(v); {
			var ext extension
			var good bool
			ext, i, good = nextExtension(v, i)
			if !good || ok || ext.tooMany || !asciiEqualFold(ext.name, extensionName) {
				return DeflateParams{}, false, ErrBadExtensionResponse
			}
			var seen [4]bool
			for _, prm := range ext.params[:ext.n] {
				idx, bits := -1, 0
				switch {
				case asciiEqualFold(prm.name, "server_no_context_takeover"):
					idx = 0
					p.ServerNoContextTakeover = !prm.hasValue
				case asciiEqualFold(prm.name, "client_no_context_takeover"):
					idx = 1
					p.ClientNoContextTakeover = !prm.hasValue
				case asciiEqualFold(prm.name, "server_max_window_bits"):
					idx, bits = 2, windowBits(prm)
					p.ServerMaxWindowBits = bits
				case asciiEqualFold(prm.name, "client_max_window_bits"):
					idx, bits = 3, windowBits(prm)
					p.ClientMaxWindowBits = bits
				}
				if idx < 0 || seen[idx] || idx < 2 && prm.hasValue || idx >= 2 && bits == 0 {
					return DeflateParams{}, false, ErrBadExtensionResponse
				}
				seen[idx] = true
			}
			ok = true
		}
	}
	return p, ok, nil
}

// extParam is one parameter of an extension in a header value.
type extParam struct {
	name     []byte
	value    []byte // raw; still escaped when quoted
	hasValue bool
	quoted   bool
}

// extension is one element of a Sec-WebSocket-Extensions list. Only the
// first four parameters are kept; tooMany reports more, which no valid
// permessage-deflate offer has.
type extension struct {
	name    []byte
	params  [4]extParam
	n       int
	tooMany bool
}

// nextExtension parses the list element starting at v[i] and returns it
// with the index just past its comma. ok is false for a malformed element,
// which is skipped.
func nextExtension(v []byte, i int) (ext extension, next int, ok bool) {
	i = skipOWS(v, i)
	ext.name, i = token(v, i)
	if len(ext.name) == 0 {
		return ext, skipElement(v, i), false
	}
	for {
		i = skipOWS(v, i)
		if i == len(v) {
			return ext, i, true
		}
		if v[i] == ',' {
			return ext, i + 1, true
		}
		if v[i] != ';' {
			return ext, skipElement(v, i), false
		}
		var prm extParam
		i = skipOWS(v, i+1)
		prm.name, i = token(v, i)
		if len(prm.name) == 0 {
			return ext, skipElement(v, i), false
		}
		i = skipOWS(v, i)
		if i < len(v) && v[i] == '=' {
			prm.hasValue = true
			i = skipOWS(v, i+1)
			if i < len(v) && v[i] == '"' {
				start := i + 1
				end := quotedEnd(v, start)
				if end < 0 {
					return ext, len(v), false
				}
				prm.value, prm.quoted, i = v[start:end], true, end+1
			} else {
				prm.value, i = token(v, i)
				if len(prm.value) == 0 {
					return ext, skipElement(v, i), false
				}
			}
		}
		if ext.n == len(ext.params) {
			ext.tooMany = true
		} else {
			ext.params[ext.n] = prm
			ext.n++
		}
	}
}

// windowBits returns the value 8..15 of a window bits parameter, or 0 if
// it has no value or an invalid one.
func windowBits(p extParam) int {
	if !p.hasValue {
		return 0
	}
	var buf [2]byte
	n := 0
	for i := 0; i < len(p.value); i++ {
		c := p.value[i]
		if p.quoted && c == '\\' && i+1 < len(p.value) {
			i++
			c = p.value[i]
		}
		if n == len(buf) || c < '0' || c > '9' {
			return 0
		}
		buf[n] = c
		n++
	}
	switch {
	case n == 1 && buf[0] >= '8':
		return int(buf[0] - '0')
	case n == 2 && buf[0] == '1' && buf[1] <= '5':
		return 10 + int(buf[1]-'0')
	}
	return 0
}

// skipOWS returns the index of the first byte at or after i that is not a
// space or tab.
func skipOWS(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// token returns the RFC 9110 token starting at v[i] and the index after it.
func token(v []byte, i int) ([]byte, int) {
	start := i
	for i < len(v) && isTokenChar(v[i]) {
		i++
	}
	return v[start:i], i
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// quotedEnd returns the index of the quote closing the quoted-string whose
// content starts at v[i], or -1.
func quotedEnd(v []byte, i int) int {
	for ; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// skipElement returns the index just past the next comma outside a
// quoted-string at or after v[i], or len(v).
func skipElement(v []byte, i int) int {
	for ; i < len(v); i++ {
		switch v[i] {
		case '"':
			end := quotedEnd(v, i+1)
			if end < 0 {
				return len(v)
			}
			i = end
		case ',':
			return i + 1
		}
	}
	return len(v)
}

// asciiEqualFold reports whether b equals s ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// deflateTail follows every compressed message fed to the decompressor:
// the sync marker that RFC 7692 §7.2.2 says to append, then an empty final
// stored block so that a well-formed message ends in io.EOF and a
// truncated one in io.ErrUnexpectedEOF.
const deflateTail = "\x00\x00\xff\xff\x01\x00\x00\xff\xff"

// syncMarker ends the output of a flate flush; RFC 7692 §7.2.1 says to
// remove it from each compressed message.
const syncMarker = "\x00\x00\xff\xff"

// appendWriter is an io.Writer that appends to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// deflateState is a compressor with its output adapter.
type deflateState struct {
	w   *flate.Writer
	out appendWriter
}

// deflatePools hold idle compressors by level (-2..9) and window bits
// (8..15).
var deflatePools [12][8]sync.Pool

// getDeflateState returns a fresh compressor for level and window bits,
// which must be valid (see Deflater.norm).
func getDeflateState(level, bits int) *deflateState {
	pool := &deflatePools[level+2][bits-8]
	if st, ok := pool.Get().(*deflateState); ok {
		st.w.Reset(&st.out)
		return st
	}
	st := new(deflateState)
	var err error
	if bits < 15 {
		st.w, err = flate.NewWriterWindow(&st.out, 1<<bits)
	} else {
		st.w, err = flate.NewWriter(&st.out, level)
	}
	if err != nil {
		panic("websocket: " + err.Error()) // level and bits are validated
	}
	return st
}

// Deflater compresses the messages one side of a connection sends. With
// context takeover it holds a compressor for the life of the connection
// (until Reset); without, it borrows one from a shared pool for the length
// of each call. The zero value compresses at level 1 with context
// takeover and a 32 KiB window. A Deflater is not safe for concurrent use.
type Deflater struct {
	level     int
	bits      int
	noContext bool
	st        *deflateState // held compressor (context takeover)
}

// NewDeflater returns the compressor for the messages that role sends on a
// connection that negotiated p, at a compression level as in
// DeflateConfig.Level.
func (p DeflateParams) NewDeflater(role Role, level int) *Deflater {
	d := &Deflater{level: level, bits: p.ServerMaxWindowBits, noContext: p.ServerNoContextTakeover}
	if role == RoleClient {
		d.bits, d.noContext = p.ClientMaxWindowBits, p.ClientNoContextTakeover
	}
	d.norm()
	return d
}

// norm replaces an invalid level with 1 and invalid window bits with 15.
func (d *Deflater) norm() {
	if d.level == 0 || d.level < -2 || d.level > 9 {
		d.level = flate.BestSpeed
	}
	if d.bits < 8 || d.bits > 15 {
		d.bits = 15
	}
}

// Compress appends the RFC 7692 compressed form of msg (the trailing
// 00 00 ff ff removed) to dst and returns the extended slice.
func (d *Deflater) Compress(dst, msg []byte) []byte {
	st := d.st
	if st == nil {
		d.norm()
		st = getDeflateState(d.level, d.bits)
		if !d.noContext {
			d.st = st
		}
	}
	start := len(dst)
	st.out.b = dst
	_, _ = st.w.Write(msg) // appendWriter never fails
	_ = st.w.Flush()
	dst = st.out.b
	st.out.b = nil
	if d.noContext {
		deflatePools[d.level+2][d.bits-8].Put(st)
	}
	if bytes.HasSuffix(dst[start:], []byte(syncMarker)) {
		dst = dst[:len(dst)-len(syncMarker)]
	}
	return dst
}

// AppendFrame appends msg as a compressed single-frame message of type op
// (OpText or OpBinary), unmasked as a server sends it, to dst.
func (d *Deflater) AppendFrame(dst []byte, op Opcode, msg []byte) []byte {
	return d.appendFrame(dst, op, false, [4]byte{}, msg)
}

// AppendMaskedFrame appends msg as a compressed single-frame message of
// type op, masked with mask as a client sends it, to dst.
func (d *Deflater) AppendMaskedFrame(dst []byte, op Opcode, mask [4]byte, msg []byte) []byte {
	return d.appendFrame(dst, op, true, mask, msg)
}

func (d *Deflater) appendFrame(dst []byte, op Opcode, masked bool, mask [4]byte, msg []byte) []byte {
	// Compress after room for the longest header, then close the gap.
	start := len(dst)
	room := 10
	if masked {
		room += 4
	}
	dst = slices.Grow(dst, room+len(msg)/2+16)
	dst = d.Compress(dst[:start+room], msg)
	clen := len(dst) - start - room
	h := FrameHeader{Fin: true, Rsv: Rsv1, Op: op, Masked: masked, Mask: mask, Length: int64(clen)}
	hl := HeaderLen(h)
	copy(dst[start+hl:], dst[start+room:])
	dst = dst[:start+hl+clen]
	AppendHeader(dst[start:start], h)
	if masked {
		MaskBytes(mask, 0, dst[start+hl:])
	}
	return dst
}

// Reset drops the compression context, returning a held compressor to the
// pool. Call it when the connection ends.
func (d *Deflater) Reset() {
	if d.st != nil {
		deflatePools[d.level+2][d.bits-8].Put(d.st)
		d.st = nil
	}
}

// msgSource feeds one compressed message and deflateTail to the
// decompressor. It implements io.ByteReader so that flate does not wrap
// it in a bufio.Reader.
type msgSource struct {
	p    []byte
	tail string
}

func (s *msgSource) Read(b []byte) (int, error) {
	if len(s.p) > 0 {
		n := copy(b, s.p)
		s.p = s.p[n:]
		return n, nil
	}
	if len(s.tail) > 0 {
		n := copy(b, s.tail)
		s.tail = s.tail[n:]
		return n, nil
	}
	return 0, io.EOF
}

func (s *msgSource) ReadByte() (byte, error) {
	if len(s.p) > 0 {
		c := s.p[0]
		s.p = s.p[1:]
		return c, nil
	}
	if len(s.tail) > 0 {
		c := s.tail[0]
		s.tail = s.tail[1:]
		return c, nil
	}
	return 0, io.EOF
}

// inflateState is a decompressor with its input adapter.
type inflateState struct {
	fr  io.ReadCloser
	src msgSource
}

var inflatePool sync.Pool

func getInflateState() *inflateState {
	if st, ok := inflatePool.Get().(*inflateState); ok {
		return st
	}
	st := new(inflateState)
	st.fr = flate.NewReader(&st.src)
	return st
}

// windowSize is the largest LZ77 window of RFC 7692, 2^15 bytes.
const windowSize = 1 << 15

// Inflater decompresses the messages one side of a connection receives.
// With context takeover it holds a decompressor and the last 32 KiB of
// output for the life of the connection (until Reset); without, it borrows
// a decompressor from a shared pool for the length of each call. The zero
// value decompresses with context takeover. An Inflater is not safe for
// concurrent use.
type Inflater struct {
	noContext bool
	st        *inflateState // held decompressor (context takeover)
	window    []byte        // last output bytes (context takeover)
}

// NewInflater returns the decompressor for the messages that role
// receives on a connection that negotiated p.
func (p DeflateParams) NewInflater(role Role) *Inflater {
	if role == RoleClient {
		return &Inflater{noContext: p.ServerNoContextTakeover}
	}
	return &Inflater{noContext: p.ClientNoContextTakeover}
}

// Decompress appends the decompressed form of the RFC 7692 compressed
// message p to dst and returns the extended slice. It fails with a
// *CloseError: CloseMessageTooBig as soon as the output exceeds maxSize
// bytes (negative means no limit), which stops decompression bombs, and
// CloseInvalidPayload when p is not valid DEFLATE data. After an error the
// compression context is lost; the connection must be closed.
func (f *Inflater) Decompress(dst, p []byte, maxSize int) ([]byte, error) {
	return f.decompress(dst, p, maxSize, nil)
}

// grower lends larger buffers for decompressed output.
type grower interface {
	grow(b []byte, n int) []byte
}

func (f *Inflater) decompress(dst, p []byte, limit int, g grower) ([]byte, error) {
	st := f.st
	if st == nil {
		st = getInflateState()
		if !f.noContext {
			f.st = st
		}
	}
	st.src = msgSource{p: p, tail: deflateTail}
	_ = st.fr.(flate.Resetter).Reset(&st.src, f.window)
	start := len(dst)
	var err error
	for {
		produced := len(dst) - start
		if limit >= 0 && produced > limit {
			err = errMessageTooBig
			break
		}
		if len(dst) == cap(dst) {
			n := max(512, produced)
			if g != nil {
				dst = g.grow(dst, n)
			} else {
				dst = slices.Grow(dst, n)
			}
		}
		// Read at most one byte past the limit, to detect exceeding it.
		end := cap(dst)
		if left := limit - produced; limit >= 0 && left < end-len(dst) {
			end = len(dst) + left + 1
		}
		var n int
		n, err = st.fr.Read(dst[len(dst):end])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			err = nil
			if limit >= 0 && len(dst)-start > limit {
				err = errMessageTooBig
			}
			break
		}
		if err != nil {
			err = errBadDeflate
			break
		}
	}
	st.src = msgSource{}
	if f.noContext {
		inflatePool.Put(st)
	} else if err == nil {
		f.remember(dst[start:])
	}
	return dst, err
}

// remember keeps the last windowSize bytes of output for the next
// message's back-references.
func (f *Inflater) remember(out []byte) {
	if f.window == nil {
		f.window = make([]byte, 0, windowSize)
	}
	if len(out) >= windowSize {
		f.window = append(f.window[:0], out[len(out)-windowSize:]...)
		return
	}
	if keep := windowSize - len(out); len(f.window) > keep {
		f.window = f.window[:copy(f.window, f.window[len(f.window)-keep:])]
	}
	f.window = append(f.window, out...)
}

// Reset drops the compression context, returning a held decompressor to
// the pool and freeing the window. Call it when the connection ends.
func (f *Inflater) Reset() {
	if f.st != nil {
		inflatePool.Put(f.st)
		f.st = nil
	}
	f.window = nil
}

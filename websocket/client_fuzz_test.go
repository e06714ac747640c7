package websocket

import (
	"bytes"
	"testing"

	"github.com/warrenhq/warren/http1"
)

// FuzzDialResponse feeds arbitrary bytes to the client's handshake
// response checks, as the handshake's OnData does: parse a head, then
// check a 101. It requires no panic, and that an accepted response
// carries the right Sec-WebSocket-Accept and only what was offered.
func FuzzDialResponse(f *testing.F) {
	key := []byte("dGhlIHNhbXBsZSBub25jZQ==")
	good := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	for _, s := range []string{
		good + "\r\n",
		good + "Sec-WebSocket-Protocol: v1\r\n\r\n",
		good + "Sec-WebSocket-Protocol: v3\r\n\r\n",
		good + "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n\r\n",
		good + "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi",
		"HTTP/1.0 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n" + good + "\r\n",
		"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope\n",
		"HTTP/1.1 101\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, deflate bool) {
		cl := &Client{}
		cl.srv.cfg.Subprotocols = []string{"v1", "v2"}
		cl.srv.cfg.Deflate.Enabled = deflate
		var p http1.ResponseParser
		for len(in) > 0 {
			var resp http1.Response
			n, err := p.Parse(in, "GET", &resp, nil)
			if err != nil || n == 0 {
				return
			}
			in = in[n:]
			switch {
			case resp.StatusCode < 200 && resp.StatusCode != 101:
				continue // interim
			case resp.StatusCode != 101:
				return // a refusal
			}
			sub, _, agreed, err := cl.checkResponse(&resp, key)
			if err != nil {
				return
			}
			if !bytes.Equal(resp.Header("Sec-WebSocket-Accept"), []byte("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) {
				t.Fatalf("accepted a wrong Sec-WebSocket-Accept: %q", resp.Raw())
			}
			if int(sub) > len(cl.srv.cfg.Subprotocols) || agreed && !deflate {
				t.Fatalf("accepted what was not offered: sub %d deflate %v: %q", sub, agreed, resp.Raw())
			}
			return
		}
	})
}

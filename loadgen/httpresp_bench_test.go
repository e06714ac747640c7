package loadgen

import (
	"strings"
	"testing"
)

// echoResp is what `warren echo` answers to GET /.
const echoResp = "HTTP/1.1 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: 5\r\n\r\nhello"

// nginxResp is a typical origin response with a dozen header fields.
const nginxResp = "HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n" +
	"Content-Type: text/html; charset=utf-8\r\nContent-Length: 12\r\nLast-Modified: Mon, 02 Jan 2006 15:04:05 GMT\r\n" +
	"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nETag: \"659d4a3b-c\"\r\nCache-Control: max-age=60\r\n" +
	"Vary: Accept-Encoding\r\nX-Content-Type-Options: nosniff\r\nAccept-Ranges: bytes\r\n\r\nhello world\n"

// chunkedResp has a chunked body of three chunks.
const chunkedResp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
	"5\r\nhello\r\n6\r\n world\r\n1\r\n\n\r\n0\r\n\r\n"

// benchResp parses copies of resp pipelined in one input, as onHTTP does.
func benchResp(b *testing.B, resp string) {
	const batch = 16
	in := []byte(strings.Repeat(resp, batch))
	var p respParser
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		used, got := 0, 0
		for used < len(in) {
			n, done, err := p.parse(in[used:])
			used += n
			if err != nil || !done {
				b.Fatalf("parse: %d %v %v", n, done, err)
			}
			got++
		}
		if got != batch || p.status != 200 {
			b.Fatalf("%d responses, status %d", got, p.status)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/resp")
}

// BenchmarkRespEcho parses the echo server's response, the common case.
func BenchmarkRespEcho(b *testing.B) { benchResp(b, echoResp) }

// BenchmarkRespNginx parses a response with a dozen header fields.
func BenchmarkRespNginx(b *testing.B) { benchResp(b, nginxResp) }

// BenchmarkRespChunked parses a small chunked response.
func BenchmarkRespChunked(b *testing.B) { benchResp(b, chunkedResp) }

package http1

import "testing"

// wrkGET is what wrk sends with a couple of extra headers (-H).
var wrkGET = []byte("GET /plaintext HTTP/1.1\r\n" +
	"Host: localhost:8080\r\n" +
	"Accept: text/plain,text/html;q=0.9\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n")

// browserGET is a Chrome-like navigation request.
var browserGET = []byte("GET /docs/getting-started?lang=en&theme=dark HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"Connection: keep-alive\r\n" +
	"Cache-Control: max-age=0\r\n" +
	"sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n" +
	"sec-ch-ua-mobile: ?0\r\n" +
	"sec-ch-ua-platform: \"macOS\"\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"Sec-Fetch-Mode: navigate\r\n" +
	"Sec-Fetch-User: ?1\r\n" +
	"Sec-Fetch-Dest: document\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-GB,en-US;q=0.9,en;q=0.8\r\n" +
	"Cookie: _ga=GA1.1.1234567890.1700000000; session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U; theme=dark\r\n" +
	"\r\n")

func benchParse(b *testing.B, in []byte) {
	var p Parser
	var req Request
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		n, err := p.Parse(in, &req, nil)
		if n != len(in) || err != nil {
			b.Fatalf("Parse = %d, %v", n, err)
		}
	}
}

// BenchmarkParseSimpleGET parses a wrk-like GET with Host and two headers.
func BenchmarkParseSimpleGET(b *testing.B) { benchParse(b, wrkGET) }

// BenchmarkParseBrowserGET parses a Chrome-like GET of about 1 KiB.
func BenchmarkParseBrowserGET(b *testing.B) { benchParse(b, browserGET) }

// BenchmarkChunkedReader decodes a 64 KiB body sent as 4 KiB chunks.
func BenchmarkChunkedReader(b *testing.B) {
	var in []byte
	chunk := make([]byte, 4<<10)
	for range 16 {
		in = AppendChunk(in, chunk)
	}
	in = AppendLastChunk(in)
	var r ChunkedReader
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(nil)
		for off := 0; ; {
			n, _, done, err := r.Next(in[off:])
			if err != nil {
				b.Fatal(err)
			}
			off += n
			if done {
				break
			}
		}
	}
}

package tlsx

import (
	"crypto/tls"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	wtest "github.com/warrenhq/warren/internal/testutil"
)

// TestIdleHeap measures the heap held per idle connection after the
// handshake, TLS 1.2 and 1.3, with WARREN_IDLE_HEAP=N (and writes a heap
// profile to WARREN_IDLE_HEAP_PROFILE when set): go test -run TestIdleHeap
// -memprofilerate 1. It is a measuring harness, not a check.
func TestIdleHeap(t *testing.T) {
	n := 0
	if s := os.Getenv("WARREN_IDLE_HEAP"); s != "" {
		for _, ch := range s {
			n = n*10 + int(ch-'0')
		}
	}
	if n == 0 {
		t.Skip("set WARREN_IDLE_HEAP=N to measure")
	}
	versions := []uint16{tls.VersionTLS12, tls.VersionTLS13}
	switch os.Getenv("WARREN_IDLE_HEAP_VERSION") {
	case "1.2":
		versions = versions[:1]
	case "1.3":
		versions = versions[1:]
	}
	for _, v := range versions {
		_, addr, pool := testServer(t, Config{RatePerIP: -1, Rate: -1, BanThreshold: -1})
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		conns := make([]*tls.Conn, 0, n)
		for range n {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: v, MaxVersion: v})
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		time.Sleep(200 * time.Millisecond)
		wtest.Eventually(t, 5*time.Second, "settled", func() bool { return true })
		// The clients' own heap is in this process too: measure it apart.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		t.Logf("TLS %x: heap %d B per idle connection (server and client side together)", v, (int64(ms.HeapAlloc)-int64(before))/int64(n))
		if p := os.Getenv("WARREN_IDLE_HEAP_PROFILE"); p != "" {
			f, _ := os.Create(p + versionName(v))
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		for _, c := range conns {
			c.Close()
		}
	}
}

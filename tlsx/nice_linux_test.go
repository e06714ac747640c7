package tlsx

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// threadNice returns the nice value of every thread of the process, by
// thread id, from /proc (field 19 of each thread's stat).
func threadNice(t *testing.T) map[int]int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int]int, len(dirs))
	for _, d := range dirs {
		tid, _ := strconv.Atoi(filepath.Base(d))
		if n, ok := statNice(d + "/stat"); ok {
			out[tid] = n
		}
	}
	return out
}

// statNice reads the nice value from a /proc stat file.
func statNice(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // from field 3, the state
	if len(f) < 17 {
		return 0, false
	}
	n, err := strconv.Atoi(f[19-3])
	return n, err == nil
}

// handshakeOnce runs one TLS 1.3 handshake against addr.
func handshakeOnce(t *testing.T, addr string, s interface{ Close() }, cfg *tls.Config) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := tls.Client(nc, cfg).Handshake(); err != nil {
		t.Fatal(err)
	}
}

// TestHandshakeNice: with Config.HandshakeNice a handshake computes on a
// thread of that nice value while GOMAXPROCS has a spare P for each CPU
// slot; the spare goes once handshakes stop, no thread but a worker's is
// lowered (the runtime does not clone a lowered thread), and the lowered
// threads end with the Server. Without the option the handshake runs at
// the process's priority and GOMAXPROCS stays.
func TestHandshakeNice(t *testing.T) {
	oldLinger := spareLinger
	spareLinger = 50 * time.Millisecond
	defer func() { spareLinger = oldLinger }()
	base := runtime.GOMAXPROCS(0)
	var nice, procs atomic.Int64
	hook := func() {
		n, _ := statNice("/proc/thread-self/stat")
		nice.Store(int64(n))
		procs.Store(int64(runtime.GOMAXPROCS(0)))
	}
	testHookHandshake.Store(&hook)
	defer testHookHandshake.Store(nil)

	// The levels are relative to the process's nice value (the test may
	// run under nice(1)).
	pn, ok := statNice("/proc/self/stat")
	if !ok {
		t.Fatal("no nice value in /proc/self/stat")
	}
	if pn >= 19 {
		t.Skipf("the process runs at nice %d: nothing to lower", pn)
	}
	for _, c := range []struct {
		nice, wantNice, wantProcs int
	}{
		{7, min(pn+7, 19), base + 1},
		{0, min(pn+DefaultHandshakeNice, 19), base + 1},
		{-1, pn, base},
	} {
		s, addr, pool := testServer(t, Config{HandshakeNice: c.nice, HandshakeCPU: 1, RatePerIP: -1, Rate: -1, BanThreshold: -1})
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
		handshakeOnce(t, addr, s, cfg)
		if int(nice.Load()) != c.wantNice || int(procs.Load()) != c.wantProcs {
			t.Fatalf("HandshakeNice %d: the handshake ran at nice %d with GOMAXPROCS %d, want nice %d and GOMAXPROCS %d",
				c.nice, nice.Load(), procs.Load(), c.wantNice, c.wantProcs)
		}
		if c.nice < 0 {
			if s.lowered.Load() != 0 || s.spareProcs() != 0 {
				t.Fatalf("HandshakeNice %d: %d threads lowered, %d spare Ps", c.nice, s.lowered.Load(), s.spareProcs())
			}
			s.Close()
			continue
		}
		// Only the workers' threads are lowered, however the runtime
		// moves the other goroutines between threads meanwhile.
		var wg sync.WaitGroup
		var leaked atomic.Int32
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if n, _ := statNice("/proc/thread-self/stat"); n != pn {
						leaked.Add(1)
					}
					runtime.Gosched()
				}
			}()
		}
		handshakeOnce(t, addr, s, cfg)
		wg.Wait()
		if leaked.Load() != 0 {
			t.Fatalf("%d checks found a goroutine other than a handshake's on a lowered thread", leaked.Load())
		}
		lowered := 0
		all := threadNice(t)
		for _, n := range all {
			if n == c.wantNice {
				lowered++
			}
		}
		if all[os.Getpid()] != pn {
			t.Fatalf("the main thread at nice %d: tools show it as the process's", all[os.Getpid()])
		}
		if lowered != int(s.lowered.Load()) || lowered == 0 {
			t.Fatalf("%d threads at nice %d, %d workers lowered", lowered, c.wantNice, s.lowered.Load())
		}
		// The spare P goes once no handshake has started for the linger.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.GOMAXPROCS(0) != base || s.spareProcs() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d (spare %d) after the handshakes, want %d", runtime.GOMAXPROCS(0), s.spareProcs(), base)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The lowered threads end with their workers.
		s.Close()
		for {
			lowered = 0
			for _, n := range threadNice(t) {
				if n == c.wantNice {
					lowered++
				}
			}
			if lowered == 0 && s.lowered.Load() == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d threads still at nice %d after Close", lowered, c.wantNice)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestHoldProcs: the Ps added are put back by the last holder, unless
// GOMAXPROCS was changed by someone else meanwhile.
func TestHoldProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(base)
	holdProcs(1)
	holdProcs(2)
	if got := runtime.GOMAXPROCS(0); got != base+2 {
		t.Fatalf("two holders (1, 2): GOMAXPROCS %d, want %d", got, base+2)
	}
	releaseProcs()
	if got := runtime.GOMAXPROCS(0); got != base+2 {
		t.Fatalf("one holder left: GOMAXPROCS %d, want %d", got, base+2)
	}
	releaseProcs()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("none left: GOMAXPROCS %d, want %d", got, base)
	}
	holdProcs(1)
	runtime.GOMAXPROCS(base + 3) // someone else's
	releaseProcs()
	if got := runtime.GOMAXPROCS(0); got != base+3 {
		t.Fatalf("changed meanwhile: GOMAXPROCS %d, want %d left alone", got, base+3)
	}
}

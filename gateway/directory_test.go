package gateway

import (
	"hash/maphash"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unique"
	"unsafe"
)

// TestDirEntry: a directory entry is 40 bytes and gives back what it was
// made of.
func TestDirEntry(t *testing.T) {
	if n := unsafe.Sizeof(dirEntry{}); n != 40 {
		t.Errorf("dirEntry is %d bytes, want 40", n)
	}
	if n := unsafe.Sizeof(Session{}); n > 64 {
		t.Errorf("Session is %d bytes, want at most 64 (a size class)", n)
	}
	if n := unsafe.Sizeof(wsDevice{}); n > 80 {
		t.Errorf("wsDevice (the WebSocket transport with its session) is %d bytes, want at most 80 (a size class)", n)
	}
	for _, remote := range []string{"127.0.0.1:5000", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80", ""} {
		at := time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC)
		p := presenceMsg{Device: "d1", State: "online", Node: "n/1", Protocol: "websocket", Remote: remote,
			ConnectedAt: at, Session: "n/1/42"}
		e, ok := entryOf(&p)
		if !ok {
			t.Fatalf("%s: entryOf refused %+v", remote, p)
		}
		d := e.info("d1")
		if d.Node != "n/1" || d.Protocol != "websocket" || d.Remote != remote || !d.ConnectedAt.Equal(at) ||
			d.session != "n/1/42" {
			t.Errorf("%s: info %+v", remote, d)
		}
	}
	if _, ok := entryOf(&presenceMsg{Node: "a", Session: "b/1"}); ok {
		t.Error("entryOf took a session of another node")
	}
}

// TestTelemetryAllocs: publishing a telemetry message allocates what
// nats.go's header encoding needs (3), not a message, a header map and its
// values, nor its subject and timestamp strings each time (built in the
// reused message's buffer).
func TestTelemetryAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	g := startGateway(t, "n1", BusConfig{})
	connect(t, g, "dev-a")
	s := g.Hub().Local("dev-a")
	data := []byte(`{"t":1,"temp":21.5}`)
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() { g.Hub().Telemetry(s, data, now) })
	t.Logf("%.1f allocations per telemetry message", allocs)
	if allocs > 3 {
		t.Errorf("%.1f allocations per telemetry message, want at most 3 (5 with the strings, 10 before the message was reused)", allocs)
	}
	if n := g.Hub().m.telemetryOut.Load(); n < 1000 {
		t.Errorf("%d published", n)
	}
}

// TestDirRec: a directory record gives back the entry and id it holds, for
// every address family and id length (inline in each size class, and the
// long form past them), and store changes an entry in place or moves it to
// a record of its new address's size.
func TestDirRec(t *testing.T) {
	if dirRecSize != 32 {
		t.Errorf("dirRec is %d bytes, want 32", dirRecSize)
	}
	if n := unsafe.Sizeof(dirShard{}); n != 128 {
		t.Errorf("dirShard is %d bytes, want 128 (two cache lines)", n)
	}
	remotes := []string{"127.0.0.1:5000", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80", ""}
	entry := func(i int, remote string) dirEntry {
		p := presenceMsg{Device: "x", State: "online", Node: "n/" + strconv.Itoa(i%3), Protocol: "mqtt", Remote: remote,
			ConnectedAt: time.Unix(1e9, int64(i)), Session: "n/" + strconv.Itoa(i%3) + "/" + strconv.Itoa(i)}
		e, ok := entryOf(&p)
		if !ok {
			t.Fatalf("entryOf %+v", p)
		}
		return e
	}
	var ds dirShard
	for n := 0; n <= 300; n++ {
		id := strings.Repeat("d", n) + strconv.Itoa(n)
		for i, remote := range remotes {
			e := entry(n+i, remote)
			r := newDirRec(id, &e)
			if r.TableKey() != id || r.entry() != e {
				t.Fatalf("id %d bytes, %q: record gives %q %+v, want %+v", len(id), remote, r.TableKey(), r.entry(), e)
			}
			if re := r.entry(); remote != "" && re.remote().String() != remote {
				got := re.remote().String()
				t.Fatalf("remote %q, want %q", got, remote)
			}
			ds.store(id, &e)
			if got, ok := ds.get(id); !ok || got != e {
				t.Fatalf("id %d bytes, %q after store: %+v %v, want %+v", len(id), remote, got, ok, e)
			}
		}
	}
	if ds.t.Len() != 301 {
		t.Fatalf("%d records, want 301", ds.t.Len())
	}
	for n := 0; n <= 300; n++ {
		id := strings.Repeat("d", n) + strconv.Itoa(n)
		ds.remove(id)
		if _, ok := ds.get(id); ok {
			t.Fatalf("id %d bytes still there", len(id))
		}
	}
	if ds.t.Len() != 0 {
		t.Fatalf("%d records left", ds.t.Len())
	}
	// An IPv4 device with a 10-byte id (warren load's dev-100000) is one
	// 48-byte object.
	e := entry(1, "127.0.2.9:40000")
	if n := testing.AllocsPerRun(100, func() { newDirRec("dev-100000", &e) }); n != 1 {
		t.Errorf("newDirRec: %v allocations, want 1", n)
	}
}

// TestDirBytesPerDevice logs what the directory costs a device (heap after
// a GC, 100,000 devices dev-1… with IPv4 addresses, as bench/devices.sh
// holds them in the prefork parent), and holds it under 80 bytes, where a
// map of entries took ≈ 100.
func TestDirBytesPerDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 records")
	}
	const n = 100000
	h := &Hub{seed: maphash.MakeSeed()}
	e := dirEntry{node: unique.Make("w1"), proto: protocolIndex("mqtt"), since: 1}
	e.setRemote(netip.MustParseAddrPort("127.0.2.9:40000"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		e.seq = uint32(i)
		h.dirSet("dev-"+strconv.Itoa(i+1), e)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("directory: %.1f bytes per device (%d devices)", per, h.dirLen())
	if h.dirLen() != n {
		t.Fatalf("%d devices, want %d", h.dirLen(), n)
	}
	if per > 80 {
		t.Errorf("directory: %.1f bytes per device, want at most 80", per)
	}
	runtime.KeepAlive(h)
}

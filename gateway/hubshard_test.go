package gateway

import (
	"strconv"
	"testing"
	"unsafe"
)

// A hub shard keeps its sessions in a keytab by device id: set replaces a
// device's session and returns the old one, drop removes only the very
// session, all yields each once; and a shard stays two cache lines.
func TestHubShardTable(t *testing.T) {
	if n := unsafe.Sizeof(shard{}); n != 128 {
		t.Fatalf("shard is %d bytes, want 128", n)
	}
	var sh shard
	const n = 1000
	ss := make([]*Session, n)
	for i := range ss {
		ss[i] = &Session{Device: "dev-" + strconv.Itoa(i)}
		if old := sh.set(ss[i]); old != nil {
			t.Fatalf("set %d replaced %v", i, old.Device)
		}
	}
	again := &Session{Device: "dev-7"}
	if old := sh.set(again); old != ss[7] {
		t.Fatal("set did not replace the device's session")
	}
	if sh.drop(ss[7]) {
		t.Fatal("drop removed a session that was replaced")
	}
	if sh.get("dev-7") != again {
		t.Fatal("the replacing session is not found")
	}
	ss[7] = again
	seen := map[*Session]bool{}
	sh.all(func(s *Session) { seen[s] = true })
	if len(seen) != n {
		t.Fatalf("all yields %d sessions, want %d", len(seen), n)
	}
	for i, s := range ss {
		if sh.get(s.Device) != s || !seen[s] {
			t.Fatalf("session %d missing", i)
		}
		if i%2 == 0 && !sh.drop(s) {
			t.Fatalf("drop %d", i)
		}
	}
	for i, s := range ss {
		if got := sh.get(s.Device); (got == s) != (i%2 == 1) {
			t.Fatalf("after drops, session %d: %v", i, got)
		}
	}
}

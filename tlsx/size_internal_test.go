package tlsx

import (
	"testing"
	"unsafe"
)

// TestRecordSize reports the record layer's footprint per idle TLS 1.3
// connection, and guards it: it is most of what TLS adds to a connection.
func TestRecordSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("64-bit figure")
	}
	r, st := unsafe.Sizeof(recordLayer{}), unsafe.Sizeof(ConnState{})
	t.Logf("record13 %d B, ConnState %d B", r, st)
	if r > 416 {
		t.Fatalf("record13 is %d bytes; keep it at or under 416 (a malloc size class)", r)
	}
}

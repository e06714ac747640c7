package procstat

import "testing"

func TestRSS(t *testing.T) {
	if RSS() < 1<<20 {
		t.Fatalf("RSS %d: implausibly small", RSS())
	}
	if GoMemory() == 0 {
		t.Fatal("no Go memory figure")
	}
}

//go:build linux || darwin || freebsd

package engine

import (
	"runtime"
	"testing"
)

// Loops that block in epoll_wait keep one P spare, once: a second engine
// with the default loops neither takes the spare for a loop nor raises
// GOMAXPROCS again, and a GOMAXPROCS the user chose is left alone.
func TestSpareP(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	spareP.mu.Lock()
	saved := spareP.set
	spareP.set = 0
	spareP.mu.Unlock()
	defer func() {
		spareP.mu.Lock()
		spareP.set = saved
		spareP.mu.Unlock()
	}()
	runtime.GOMAXPROCS(2)
	if n := defaultLoops(); n != 2 {
		t.Fatalf("defaultLoops() = %d at GOMAXPROCS 2, want 2", n)
	}
	reserveSpareP(2)
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Fatalf("GOMAXPROCS %d after reserveSpareP(2), want 3", n)
	}
	if n := defaultLoops(); n != 2 {
		t.Fatalf("defaultLoops() = %d with the spare P, want 2", n)
	}
	reserveSpareP(2)
	reserveSpareP(1)
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Fatalf("GOMAXPROCS %d after more engines, want 3", n)
	}
	reserveSpareP(runtime.NumCPU() + 1) // more loops than CPUs: no spare
	runtime.GOMAXPROCS(4)
	if n := defaultLoops(); n != 4 {
		t.Fatalf("defaultLoops() = %d at a GOMAXPROCS of 4 the engine did not set, want 4", n)
	}
}

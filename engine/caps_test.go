package engine

import (
	"testing"
	"unsafe"
)

type capsBenchA struct{ echoHandler }
type capsBenchB struct{ echoHandler }

func (*capsBenchB) OnEOF(*Conn) {}

// BenchmarkCapsOf is a handler hand-off's type look-up: a reverse proxy's
// client connection changes handler twice a request (idle → request →
// idle), each a capsOf of one of two types.
func BenchmarkCapsOf(b *testing.B) {
	hs := [2]Handler{&capsBenchA{}, &capsBenchB{}}
	b.ReportAllocs()
	var sum uint8
	for i := 0; b.Loop(); i++ {
		sum += capsOf(hs[i&1])
	}
	_ = sum
}

// capsOf answers each type from its own entry, through collisions of the
// fast cache too (more types than slots), and a value of a type keeps the
// type's capabilities whatever the value.
func TestCapsOfManyTypes(t *testing.T) {
	type eofOnly struct{ Handler }
	hs := []Handler{&capsBenchA{}, &capsBenchB{}, newEcho(), (*eofH)(nil), eofOnly{}}
	for round := 0; round < 3; round++ {
		for _, h := range hs {
			slow := capsEntryOf(h, typeWord(h)).caps
			if got := capsOf(h); got != slow {
				t.Fatalf("%T: capsOf %08b, want %08b", h, got, slow)
			}
		}
	}
	if capsOf(hs[1])&capEOF == 0 || capsOf(hs[0])&capEOF != 0 {
		t.Fatalf("EOF capability: A %08b, B %08b", capsOf(hs[0]), capsOf(hs[1]))
	}
	// Fill every slot with an entry of another type: the answers stay
	// right, and each slot asked is taken back by its own type.
	var other byte
	for i := range capsFast {
		capsFast[i].Store(&capsEntry{typ: unsafe.Pointer(&other), caps: 0xff})
	}
	defer func() {
		for i := range capsFast {
			capsFast[i].Store(nil)
		}
	}()
	for _, h := range hs {
		if got, slow := capsOf(h), capsEntryOf(h, typeWord(h)).caps; got != slow {
			t.Fatalf("%T after collisions: capsOf %08b, want %08b", h, got, slow)
		}
	}
}

type eofH struct{ echoHandler }

func (*eofH) OnEOF(*Conn) {}

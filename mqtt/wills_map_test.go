package mqtt

import (
	"reflect"
	"runtime"
	"testing"
)

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Server.wills is made anew when it falls under an eighth of a large peak
// (Go maps do not shrink): the wills left are kept, the bytes and the
// gauge stay right, and the memory of the peak is freed.
func TestWillsMapShrinksAfterPeak(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	const n = 100_000
	ss := make([]*session, n)
	ws := make([]*msg, n)
	for i := range ss {
		ss[i] = new(session)
		ws[i] = &msg{size: 100}
	}
	h0 := heapAlloc()
	s.mu.Lock()
	for i := range ss {
		s.setWill(ss[i], ws[i])
	}
	s.mu.Unlock()
	h1 := heapAlloc()
	peak := uintptr(reflect.ValueOf(s.wills).UnsafePointer()) // not a pointer: the old map must go
	const keep = 10
	s.mu.Lock()
	for i := keep; i < n; i++ {
		s.setWill(ss[i], nil)
	}
	s.mu.Unlock()
	h2 := heapAlloc()
	t.Logf("%d wills: %.1f B a will; with %d left: %d B kept", n, float64(h1-h0)/n, keep, int64(h2)-int64(h0))
	if uintptr(reflect.ValueOf(s.wills).UnsafePointer()) == peak {
		t.Fatalf("the map of the %d-will peak is kept with %d wills", n, len(s.wills))
	}
	if len(s.wills) != keep || s.willBytes != keep*100 || s.Stats().Wills != keep {
		t.Fatalf("after the shrink: %d wills, %d bytes, gauge %d; want %d, %d", len(s.wills), s.willBytes, s.Stats().Wills, keep, keep*100)
	}
	for i := range keep {
		if s.wills[ss[i]] != ws[i] {
			t.Fatalf("will %d lost in the shrink", i)
		}
	}
	if kept := int64(h2) - int64(h0); kept > int64(h1-h0)/4 {
		t.Errorf("%d B kept with %d wills, of %d at the peak", kept, keep, h1-h0)
	}
	runtime.KeepAlive(ss)
	runtime.KeepAlive(ws)
}

// A small map is not made anew: under willsShrinkPeak the copy is not
// worth it.
func TestWillsMapSmallKept(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	ss := make([]*session, willsShrinkPeak-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range ss {
		ss[i] = new(session)
		s.setWill(ss[i], &msg{size: 1})
	}
	m := reflect.ValueOf(s.wills).UnsafePointer()
	for i := range ss {
		s.setWill(ss[i], nil)
	}
	if reflect.ValueOf(s.wills).UnsafePointer() != m || len(s.wills) != 0 || s.willBytes != 0 {
		t.Fatalf("small map: remade %v, %d wills, %d bytes", reflect.ValueOf(s.wills).UnsafePointer() != m, len(s.wills), s.willBytes)
	}
}

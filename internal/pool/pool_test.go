package pool

import "testing"

func TestClasses(t *testing.T) {
	for _, tc := range []struct{ n, cap int }{{0, 256}, {1, 256}, {256, 256}, {257, 512}, {4096, 4096}, {4097, 8192}, {MaxSize, MaxSize}} {
		b := Get(tc.n)
		if len(b) != tc.n || cap(b) != tc.cap {
			t.Fatalf("Get(%d): len %d cap %d, want cap %d", tc.n, len(b), cap(b), tc.cap)
		}
		Put(b)
	}
	big := Get(MaxSize + 1)
	if len(big) != MaxSize+1 {
		t.Fatal("oversize Get")
	}
	Put(big)               // dropped
	Put(make([]byte, 300)) // not a class size: dropped
}

func TestGrow(t *testing.T) {
	b := append(Get(0), "hello"...)
	b = Grow(b, 1000)
	if string(b) != "hello" || cap(b) < 1005 {
		t.Fatalf("Grow lost data: %q cap %d", b, cap(b))
	}
	Put(b)
}

func BenchmarkGetPut(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Put(Get(1500))
	}
}

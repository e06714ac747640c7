package admin

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// TestBoundedTop: boundedTop keeps exactly the first n of what it is
// offered, in the sort's order, for every sort and for n below, at and
// above the count offered.
func TestBoundedTop(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	infos := make([]engine.ConnInfo, 500)
	for i := range infos {
		infos[i] = engine.ConnInfo{ID: uint64(r.IntN(1000) + 1), Created: t0.Add(time.Duration(r.IntN(50)) * time.Second),
			LastActive: t0.Add(time.Duration(r.IntN(50)) * time.Second), BytesIn: uint64(r.IntN(20)),
			Served: uint64(r.IntN(5)), WriteBuffer: r.IntN(3)}
	}
	for name, cmp := range sorts {
		want := slices.Clone(infos)
		slices.SortStableFunc(want, func(a, b engine.ConnInfo) int { return cmp(&a, &b) })
		for _, n := range []int{0, 1, 7, 100, 500, 800} {
			top := boundedTop{cmp: cmp, n: n}
			for i := range infos {
				top.offer(&infos[i])
			}
			got := top.sorted()
			w := want[:min(n, len(want))]
			if len(got) != len(w) {
				t.Fatalf("%s n=%d: kept %d, want %d", name, n, len(got), len(w))
			}
			for i := range got {
				if cmp(&got[i], &w[i]) != 0 {
					t.Fatalf("%s n=%d: at %d got %+v, want %+v", name, n, i, got[i], w[i])
				}
			}
		}
	}
}

//go:build linux || darwin || freebsd

package engine

import "testing"

// TestGrowTable checks the descriptor table's growth: it holds the new
// index, keeps its entries, and leaves little slack.
func TestGrowTable(t *testing.T) {
	var tab []*Conn
	c := new(Conn)
	grows := 0
	for fd := 0; fd < 200_000; fd++ {
		if fd >= len(tab) {
			tab = growTable(tab, fd)
			grows++
			if tab[fd/2] == nil && fd > 0 {
				t.Fatalf("growTable lost entry %d", fd/2)
			}
			if fd > 20_000 && len(tab) > fd+fd/8+1024 {
				t.Fatalf("table of %d slots for descriptor %d: too much slack", len(tab), fd)
			}
		}
		tab[fd] = c
	}
	if grows > 40 {
		t.Fatalf("%d grows for 200,000 descriptors", grows)
	}
	if tab = growTable(nil, 5000); len(tab) <= 5000 {
		t.Fatalf("growTable(nil, 5000) has %d slots", len(tab))
	}
}

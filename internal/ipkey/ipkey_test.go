package ipkey

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		bits int
		want string
	}{
		{"192.0.2.7", 0, "192.0.2.7"},
		{"192.0.2.7", 48, "192.0.2.7"},
		{"::ffff:192.0.2.7", 0, "192.0.2.7"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 0, "2001:db8:1:2::"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 48, "2001:db8:1::"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 56, "2001:db8:1::"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 128, "2001:db8:1:2:aaaa:bbbb:cccc:dddd"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 200, "2001:db8:1:2:aaaa:bbbb:cccc:dddd"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", -1, "2001:db8:1:2:aaaa:bbbb:cccc:dddd"},
		{"fe80::1%eth0", 0, "fe80::"},
		{"fe80::1%eth0", 128, "fe80::1"},
		{"::1", 0, "::"},
	} {
		got := Of(netip.MustParseAddr(tc.in), tc.bits)
		if got.String() != tc.want {
			t.Errorf("Of(%s, %d) = %s, want %s", tc.in, tc.bits, got, tc.want)
		}
	}
	// Two addresses of one /64 share a key; of two /64s they do not.
	a := Of(netip.MustParseAddr("2001:db8::1"), 0)
	b := Of(netip.MustParseAddr("2001:db8::ffff:1"), 0)
	c := Of(netip.MustParseAddr("2001:db8:0:1::1"), 0)
	if a != b || a == c {
		t.Errorf("keys: %s %s %s", a, b, c)
	}
}

func TestBits(t *testing.T) {
	for in, want := range map[int]int{0: 64, 48: 48, 128: 128, 129: 128, -5: 128, 1: 1} {
		if got := Bits(in); got != want {
			t.Errorf("Bits(%d) = %d, want %d", in, got, want)
		}
	}
}

func ExampleOf() {
	fmt.Println(Of(netip.MustParseAddr("2001:db8:7:8:1:2:3:4"), 0))
	fmt.Println(Of(netip.MustParseAddr("2001:db8:7:8:1:2:3:4"), 128))
	fmt.Println(Of(netip.MustParseAddr("198.51.100.9"), 0))
	// Output:
	// 2001:db8:7:8::
	// 2001:db8:7:8:1:2:3:4
	// 198.51.100.9
}

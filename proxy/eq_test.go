package proxy

import (
	"strings"
	"testing"
)

// TestEq checks the word-at-a-time eq against a byte-at-a-time reference
// for names of every length the proxy compares, with every byte value at
// every position, and for lengths that differ.
func TestEq(t *testing.T) {
	ref := func(b []byte, s string) bool {
		if len(b) != len(s) {
			return false
		}
		for i := range b {
			c := b[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != s[i] {
				return false
			}
		}
		return true
	}
	for _, s := range []string{"te", "via", "host", "realm", "expect", "trailer", "location", "forwarded",
		"keep-alive", "retry-after", "x-forwarded-", "authorization", "content-length", "www-authenticate",
		"x-forwarded-proto", "proxy-authenticate", "proxy-authorization"} {
		up := []byte(strings.ToUpper(s))
		for pos := range len(s) {
			for c := 0; c < 256; c++ {
				for _, base := range [][]byte{[]byte(s), up} {
					b := append([]byte(nil), base...)
					b[pos] = byte(c)
					if got, want := eq(b, s), ref(b, s); got != want {
						t.Fatalf("eq(%q, %q) = %v, want %v", b, s, got, want)
					}
				}
			}
		}
		if eq([]byte(s+"x"), s) || eq([]byte(s[1:]), s) {
			t.Fatalf("eq matched %q with a name of another length", s)
		}
	}
}

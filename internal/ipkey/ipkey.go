// Package ipkey turns a client's address into the key that per-client
// bounds count it under.
//
// An IPv4 client is counted by its address. An IPv6 client is counted by a
// prefix of its address, a /64 by default: a subscriber, a host or a cloud
// instance is usually given a whole /64, so a bound keyed on the full
// address is one that a single client can step around by changing its
// interface identifier, 2^64 times over.
package ipkey

import "net/netip"

// DefaultIPv6Bits is the prefix length an IPv6 client is counted by when a
// setting leaves it zero.
const DefaultIPv6Bits = 64

// Of returns the key addr is counted under: an IPv4 address (or an
// IPv4-mapped IPv6 one) is its own key; an IPv6 address is cut to its first
// v6Bits bits, the rest set to zero. v6Bits zero means DefaultIPv6Bits;
// 128 or more (or a negative value) keeps the whole address. The zone is
// dropped.
func Of(addr netip.Addr, v6Bits int) netip.Addr {
	addr = addr.Unmap().WithZone("")
	if !addr.Is6() {
		return addr
	}
	if v6Bits == 0 {
		v6Bits = DefaultIPv6Bits
	}
	if v6Bits < 0 || v6Bits >= 128 {
		return addr
	}
	p, err := addr.Prefix(v6Bits)
	if err != nil {
		return addr
	}
	return p.Addr()
}

// Bits returns the prefix length IPv6 clients are counted by for the
// setting v6Bits, as Of applies it: 64 for zero, 128 for 128 and more or a
// negative value.
func Bits(v6Bits int) int {
	switch {
	case v6Bits == 0:
		return DefaultIPv6Bits
	case v6Bits < 0 || v6Bits > 128:
		return 128
	}
	return v6Bits
}

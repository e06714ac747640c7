// Package benchutil holds the small pieces warren's benchmark programs
// share: raising the open-file limit, spreading dials over loopback source
// addresses, naming errors for counting, reading an HTTP response, and
// reading a process's CPU time and memory from /proc.
package benchutil

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// SourceAddrs returns count consecutive IPv4 addresses starting at base, for
// spreading client connections over many loopback source addresses so no
// single one runs out of ephemeral ports. An empty base returns nil: dial
// from whatever address the kernel picks.
func SourceAddrs(base string, count int) ([]*net.TCPAddr, error) {
	if base == "" {
		return nil, nil
	}
	a, err := netip.ParseAddr(base)
	if err != nil || !a.Is4() {
		return nil, fmt.Errorf("source base %q: want an IPv4 address", base)
	}
	if count < 1 {
		count = 1
	}
	out := make([]*net.TCPAddr, 0, count)
	for range count {
		out = append(out, &net.TCPAddr{IP: a.AsSlice()})
		a = a.Next()
		if b := a.As4(); b[3] == 0 { // skip .0 and .255 for tidiness
			a = a.Next()
		} else if b[3] == 255 {
			a = a.Next().Next()
		}
	}
	return out, nil
}

// Dialer returns a dialer for the i-th connection, binding its local
// address round-robin over srcs (or no binding when srcs is empty).
func Dialer(srcs []*net.TCPAddr, i int, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if len(srcs) > 0 {
		d.LocalAddr = srcs[i%len(srcs)]
	}
	return d
}

// LocalAddrs returns the addresses of srcs, for websocket.DialConfig's
// LocalAddr; it returns one zero address (the kernel's choice) when srcs
// is empty.
func LocalAddrs(srcs []*net.TCPAddr) []netip.Addr {
	if len(srcs) == 0 {
		return []netip.Addr{{}}
	}
	out := make([]netip.Addr, len(srcs))
	for i, a := range srcs {
		out[i], _ = netip.AddrFromSlice(a.IP)
		out[i] = out[i].Unmap()
	}
	return out
}

// ClockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat. It is 100 on every mainstream Linux build; tools that know
// better (getconf CLK_TCK) may override it.
var ClockTicks = 100

// CPUTime returns the user plus system CPU time the process pid has used,
// from /proc/PID/stat (pid 0 means this process). It fails where there is
// no /proc.
func CPUTime(pid int) (time.Duration, error) {
	p := "/proc/self/stat"
	if pid > 0 {
		p = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: unexpected format", p)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: unexpected format", p)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: unexpected format", p)
	}
	return time.Duration(ut+st) * time.Second / time.Duration(ClockTicks), nil
}

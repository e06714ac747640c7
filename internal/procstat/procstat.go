// Package procstat reads the current process's resource figures.
package procstat

import "runtime/metrics"

// RSS returns the process's resident set size in bytes: VmRSS on Linux
// (from /proc/self/statm), elsewhere — where the resident set is not
// portably available — the memory the Go runtime has obtained from the
// operating system, an upper bound on the Go part of it.
func RSS() uint64 {
	if n, ok := residentPages(); ok {
		return n
	}
	return GoMemory()
}

// GoMemory returns all memory mapped by the Go runtime (what
// runtime.MemStats.Sys reports), read without stopping the world.
func GoMemory() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

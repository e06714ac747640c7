//go:build !linux

package admin

// residentBytes returns the memory the Go runtime has obtained from the
// operating system: the resident set is not portably available, and this is
// an upper bound on the Go part of it.
func residentBytes() uint64 { return goMemoryBytes() }

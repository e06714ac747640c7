//go:build !(linux || darwin || freebsd)

package benchutil

// RaiseFileLimit does nothing on this platform and reports no limit.
func RaiseFileLimit() (uint64, error) { return 0, nil }

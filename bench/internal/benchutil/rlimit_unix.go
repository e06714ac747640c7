//go:build linux || darwin || freebsd

package benchutil

import "syscall"

// RaiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit and returns
// the soft limit now in force.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return uint64(rl.Cur), nil
}

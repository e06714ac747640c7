//go:build linux

package prefork

import "syscall"

// sysProcAttr makes a worker die with the parent.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

//go:build !linux

package prefork

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

//go:build !windows

package engine

// peerResetOS reports nothing here: syscall.ECONNRESET and EPIPE are the
// errors sockets return (see isPeerReset).
func peerResetOS(error) bool { return false }

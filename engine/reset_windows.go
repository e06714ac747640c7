package engine

import (
	"errors"
	"syscall"
)

// peerResetOS reports the Windows socket errors for a peer that is gone:
// WSAECONNRESET (10054, "forcibly closed by the remote host"), and
// WSAECONNABORTED (10053), which a send on a connection the peer has
// dropped gets, the nearest Windows has to EPIPE. syscall.ECONNRESET and
// EPIPE on Windows are invented codes that socket calls never return.
func peerResetOS(err error) bool {
	return errors.Is(err, syscall.WSAECONNRESET) || errors.Is(err, syscall.WSAECONNABORTED)
}

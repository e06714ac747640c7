//go:build unix

package benchutil

import (
	"os"
	"os/signal"
	"syscall"
)

// NotifyStats relays SIGUSR1, the "print your memory figures" signal, to c.
func NotifyStats(c chan<- os.Signal) { signal.Notify(c, syscall.SIGUSR1) }

//go:build !unix

package benchutil

import "os"

// NotifyStats does nothing on platforms without SIGUSR1.
func NotifyStats(c chan<- os.Signal) {}

//go:build !linux

package tlsx

import "errors"

// niceSupported: elsewhere a nice value is the process's (or the call is
// missing), so Config.HandshakeNice is ignored.
const niceSupported = false

var errMainThread = errors.New("tlsx: on the main thread")

func lowerThread(int) error { return errors.New("tlsx: per-thread priority is Linux only") }

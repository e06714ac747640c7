//go:build !linux

package loadgen

import "os/exec"

// setDeathSignal does nothing here: a worker stops when its standard input
// ends, which happens when the parent dies.
func setDeathSignal(cmd *exec.Cmd) {}

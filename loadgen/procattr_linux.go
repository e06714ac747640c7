package loadgen

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks the kernel to kill the worker when its parent dies,
// in addition to the worker's own watch on its standard input.
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

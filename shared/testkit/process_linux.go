package testkit

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the process if the test binary dies
// (a panic, a timeout), so that no child outlives a test run.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

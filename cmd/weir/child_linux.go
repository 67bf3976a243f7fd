package main

import (
	"os/exec"
	"syscall"
)

// bindChild makes the kernel kill a job binary when weir dies, so that a
// `kill -9` of weir does not leave its job running (and writing output)
// behind it.
func bindChild(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

//go:build !linux

package taskmanager

import (
	"os/exec"
	"syscall"
)

// isolate does nothing where the kernel cannot tie a child's life to its
// parent's.
func isolate(*exec.Cmd) {}

// signalGroup sends SIGTERM (or a kill) to the worker.
func signalGroup(cmd *exec.Cmd, kill bool) {
	if kill {
		cmd.Process.Kill()
		return
	}
	if cmd.Process.Signal(syscall.SIGTERM) != nil {
		cmd.Process.Kill()
	}
}

// hardwareMemory is unknown here.
func hardwareMemory() int64 { return 0 }

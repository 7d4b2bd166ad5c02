//go:build unix && !linux

package kubecluster

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts a child in its own process group. Only Linux can have the kernel kill it
// when the test process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

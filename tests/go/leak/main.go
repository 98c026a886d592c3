// The Go scenario of the stack tests (tests/tests/go.rs): a child started
// with os/exec and never waited for, as a Go program leaks one. The tests
// find the line to expect by its MARK comment, and build this program with
// Debian's Go toolchain, with and without `-ldflags=-s -w`.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
	"unsafe"
)

// startHelper starts a child and forgets it: no Wait(), so nothing reaps it
// while this process lives.
func startHelper() int {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil { // MARK: start
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(2)
	}
	return cmd.Process.Pid
}

// waitForZombie returns once the child has exited and is a zombie, without
// reaping it: waitid(P_PID, pid, WEXITED|WNOWAIT), which os and syscall do
// not wrap.
func waitForZombie(pid int) {
	const pPid, wExited, wNoWait = 1, 4, 0x01000000
	var info [128]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPid, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0)
		if errno != syscall.EINTR {
			if errno != 0 {
				fmt.Fprintln(os.Stderr, "waitid:", errno)
				os.Exit(2)
			}
			return
		}
	}
}

func main() {
	holdMs := 600
	if len(os.Args) > 1 {
		fmt.Sscan(os.Args[1], &holdMs)
	}
	pid := startHelper()
	waitForZombie(pid)
	// The zombie stays while this process holds on, past check's threshold.
	time.Sleep(time.Duration(holdMs) * time.Millisecond)
}

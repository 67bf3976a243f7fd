//go:build unix

package minicluster_test

import (
	"syscall"
	"time"
)

// processCPUTime returns the user and system CPU time of the process, all
// goroutines (Pebble's flushes and compactions included).
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Package procstat reads this process's resource usage, for the figures
// benchmarks and built-in jobs print.
package procstat

import "syscall"

// CPUSeconds is the user+system CPU time of this process so far, or 0 if
// the system cannot tell.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

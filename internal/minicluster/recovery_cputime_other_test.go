//go:build !unix

package minicluster_test

import "time"

func processCPUTime() time.Duration { return 0 }

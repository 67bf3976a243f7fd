//go:build !unix

package pebblestate

import "time"

func processCPUTime() time.Duration { return 0 }

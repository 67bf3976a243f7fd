//go:build race

package codec

// raceEnabled: the race detector makes sync.Pool drop values on purpose, so
// allocation counts are only checked without it.
const raceEnabled = true

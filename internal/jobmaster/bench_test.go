package jobmaster

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/checkpoint/coordinator"
)

var benchStateSize = flag.String("weir.state-size", "64MiB",
	"keyed state of BenchmarkIncrementalCheckpoint, e.g. 64MiB or 1GiB")

// parseSize parses "64MiB", "1GiB" or a number of bytes.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = rest, m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// BenchmarkIncrementalCheckpoint measures what an incremental checkpoint
// uploads: keyed state of -weir.state-size (default 64MiB) in one Pebble
// backend, 1 KiB values, and before each checkpoint 1% of the keys, picked
// at random, get new values. Each op is one incremental checkpoint (the
// full first checkpoint is setup); it reports the bytes uploaded per
// checkpoint and their share of the checkpoint's whole size (every file it
// names), and prints each checkpoint's figures. Run it a fixed number of
// times, as the setup is the bulk of the time:
//
//	go test ./internal/jobmaster -run '^$' -bench IncrementalCheckpoint -benchtime 5x
//	go test ./internal/jobmaster -run '^$' -bench IncrementalCheckpoint -benchtime 5x -weir.state-size 1GiB
func BenchmarkIncrementalCheckpoint(b *testing.B) {
	size, err := parseSize(*benchStateSize)
	if err != nil || size <= 0 {
		b.Fatalf("-weir.state-size=%q: want a size such as 64MiB or 1GiB", *benchStateSize)
	}
	const valueSize = 1 << 10
	keys := int(size / valueSize)
	h := newIncHarness(b, 1)
	for from := 0; from < keys; from += 10000 {
		h.write(from, min(10000, keys-from), valueSize, 1)
	}
	prev := h.checkpoint(1)
	h.inc.completed(1, coordinator.Checkpoint)
	_, full := uploaded(b, nil, prev)
	b.Logf("state %d keys × %d B; full checkpoint 1: %.1f MiB", keys, valueSize, mib(full))

	rng := rand.New(rand.NewPCG(1, 2))
	changed := max(keys/100, 1)
	// Warm up: the load's compactions settle, as in a job that has run a
	// while, and the LSM reaches its steady shape under the updates.
	for id := int64(2); id < 2+benchWarmup; id++ {
		for range changed {
			h.write(rng.IntN(keys), 1, valueSize, byte(id))
		}
		prev = h.checkpoint(id)
		h.inc.completed(id, coordinator.Checkpoint)
	}
	var sumUp, sumTotal int64
	b.ResetTimer()
	for i := range b.N {
		id := int64(i + 2 + benchWarmup)
		for range changed {
			h.write(rng.IntN(keys), 1, valueSize, byte(id))
		}
		md := h.checkpoint(id)
		h.inc.completed(id, coordinator.Checkpoint)
		up, total := uploaded(b, prev, md)
		sumUp += up
		sumTotal += total
		fmt.Printf("checkpoint %d: %d keys changed; uploaded %.2f MiB of %.1f MiB (%.2f%%)\n",
			id, changed, mib(up), mib(total), 100*float64(up)/float64(total))
		prev = md
	}
	b.StopTimer()
	h.settle()
	b.ReportMetric(float64(sumUp)/float64(b.N), "uploaded-B/op")
	b.ReportMetric(100*float64(sumUp)/float64(sumTotal), "%uploaded")
}

// benchWarmup is the number of incremental checkpoints before the
// measured ones.
const benchWarmup = 10

func mib(n int64) float64 { return float64(n) / (1 << 20) }

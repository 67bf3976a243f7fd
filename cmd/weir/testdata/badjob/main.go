// Command badjob is a Weir job that goes wrong on purpose, for the CLI
// tests: --fail picks how.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

// chanKey cannot be a key: a channel has no encoding.
type chanKey struct {
	Name string
	C    chan int
}

func main() {
	fail := flag.String("fail", "panic", "panic: a Map panics; keypanic: a KeyBy function panics; key: a key type that cannot be encoded; forever: run until canceled")
	flag.Parse()

	env := stream.NewEnvironment()
	rows := int64(1000)
	if *fail == "forever" {
		rows = -1
	}
	nums := stream.FromSource(env, "numbers", source.RateLimited(source.Generator(rows, func(i int64) int64 { return i }), 1000))
	switch *fail {
	case "panic":
		nums = stream.Map(nums, "explode", func(i int64) int64 {
			if i == 50 {
				var m map[string]int
				m["boom"]++ // assignment to entry in nil map
			}
			return i
		})
	case "key":
		keyed := stream.KeyBy(nums, func(i int64) chanKey { return chanKey{Name: "k"} })
		nums = keyed.Reduce("sum", func(a, b int64) int64 { return a + b })
	case "keypanic":
		keyed := stream.KeyBy(nums, func(i int64) string {
			if i == 10 {
				panic(fmt.Sprintf("no key for %d", i))
			}
			return "k"
		})
		nums = keyed.Reduce("sum", func(a, b int64) int64 { return a + b })
	case "forever":
	default:
		fmt.Fprintf(os.Stderr, "badjob: unknown --fail %q\n", *fail)
		os.Exit(2)
	}
	stream.SinkTo(nums, "out", sink.Blackhole[int64]())
	if err := env.Execute("badjob"); err != nil {
		if errors.Is(err, stream.ErrJobCanceled) {
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "badjob:", err)
		os.Exit(1)
	}
}

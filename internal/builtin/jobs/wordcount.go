// Package jobs holds the jobs compiled into the weir binary. Each is written
// with the public DataStream API exactly as a user's job would be.
package jobs

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/weirstream/weir/internal/builtin"
	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

func init() {
	builtin.Register(builtin.Job{
		Name:    "wordcount",
		Summary: "count the words of a text file: --input FILE --output FILE",
		Main:    wordcountMain,
	})
}

// WordCount is one output row of the wordcount job.
type WordCount struct {
	Word  string
	Count int64
}

// newFlags returns a job's flag set that reports errors instead of exiting.
func newFlags(job string) *flag.FlagSet {
	fs := flag.NewFlagSet("builtin:"+job, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses job arguments; -h prints the job's usage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fmt.Fprintf(os.Stdout, "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return fmt.Errorf("%s: %w (run `weir run %s --help` for its options)", fs.Name(), err, fs.Name())
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (run `weir run %s --help` for its options)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}

// errHelp ends a job after printing its usage.
var errHelp = builtin.ErrHelp

func wordcountMain(args []string) error {
	fs := newFlags("wordcount")
	input := fs.String("input", "", "text file or directory of text files to count the words of (required)")
	output := fs.String("output", "", "file to write one `word<TAB>count` line per distinct word to (default: stdout)")
	rate := fs.Float64("rate", 0, "lines per second to read across all subtasks; 0 reads as fast as possible")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *input == "" {
		return fmt.Errorf("builtin:wordcount: --input FILE is required")
	}
	if *rate < 0 {
		return fmt.Errorf("builtin:wordcount: --rate %g: give lines per second, or 0 to read as fast as possible", *rate)
	}
	if _, err := os.Stat(*input); err != nil {
		return fmt.Errorf("builtin:wordcount: --input %s: %w", *input, pathError(err))
	}
	env := stream.NewEnvironment()
	var src = source.TextFile(*input)
	if *rate > 0 {
		src = source.RateLimited(src, *rate)
	}
	lines := stream.FromSource(env, "lines", src)
	words := stream.FlatMap(lines, "split", SplitWords)
	counts := stream.Process(stream.KeyBy(words, func(w string) string { return w }), "count", &finalCount{})
	if *output == "" {
		stream.SinkTo(counts, "out", sink.Print[WordCount]("")).SetParallelism(1)
	} else {
		stream.SinkTo(counts, "out", sink.File(*output, formatWordCount)).SetParallelism(1)
	}
	return env.Execute("wordcount")
}

func formatWordCount(w WordCount) string {
	return w.Word + "\t" + strconv.FormatInt(w.Count, 10)
}

func pathError(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no such file or directory; check the path")
	}
	return err
}

// SplitWords emits the words of a line: maximal runs of letters and digits,
// lower-cased.
func SplitWords(line string, out stream.Collector[string]) {
	start := -1
	lower := true
	for i := 0; i < len(line); {
		r, size := rune(line[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(line[i:])
		}
		if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9') || r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) || r >= 'A' && r <= 'Z' {
			if start < 0 {
				start, lower = i, true
			}
			if r >= 'A' && r <= 'Z' || r >= utf8.RuneSelf && unicode.ToLower(r) != r {
				lower = false
			}
		} else if start >= 0 {
			emitWord(line[start:i], lower, out)
			start = -1
		}
		i += size
	}
	if start >= 0 {
		emitWord(line[start:], lower, out)
	}
}

func emitWord(w string, lower bool, out stream.Collector[string]) {
	if lower {
		out.Collect(w)
		return
	}
	out.Collect(strings.ToLower(w))
}

// finalCount counts the words of each key and emits the count once, when
// the input has ended: its event-time timer at the end of time fires on the
// final watermark.
type finalCount struct {
	count stream.ValueState[int64]
}

func (f *finalCount) Open(rc *stream.RuntimeContext) error {
	var err error
	f.count, err = stream.ValueStateOf[int64](rc, "count")
	return err
}

func (f *finalCount) ProcessElement(ctx *stream.KeyedContext[string, WordCount], w string) error {
	n, ok := f.count.Value()
	if !ok {
		ctx.TimerService().RegisterEventTimeTimer(math.MaxInt64)
	}
	f.count.Update(n + 1)
	return nil
}

func (f *finalCount) OnTimer(ctx *stream.KeyedContext[string, WordCount], ts int64, _ stream.TimeDomain) error {
	n, _ := f.count.Value()
	ctx.Collect(WordCount{Word: ctx.Key(), Count: n})
	return nil
}

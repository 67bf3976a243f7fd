// Command wordcount is a Weir job written the way a user writes one: an
// ordinary Go program that builds a dataflow with the DataStream API and
// calls Execute. It counts the words of a text (maximal runs of letters and
// digits, lower-cased) and writes one "word<TAB>count" line per word.
//
// Run directly, it executes on an embedded local cluster in this process:
//
//	go run ./examples/wordcount                              # counts a built-in text, prints to stdout
//	go run ./examples/wordcount --input words.txt --output counts.txt
//
// Built, the binary is the job artifact, and weir runs it with Weir's own
// options (given before the job; the job's flags come after it):
//
//	go build -o wordcount ./examples/wordcount
//	weir run -p 2 ./wordcount --input words.txt --output counts.txt
//	weir info ./wordcount --input words.txt                  # the chained plan, without running
package main

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

//go:embed hamlet.txt
var defaultText string

func main() {
	input := flag.String("input", "", "text file (or directory of text files) to count the words of (default: a built-in text)")
	output := flag.String("output", "", "file to write the counts to (default: stdout)")
	flag.Parse()

	var lines connector.Source[string]
	if *input == "" {
		lines = source.FromSlice(strings.Split(strings.TrimSpace(defaultText), "\n"))
	} else {
		lines = source.TextFile(*input)
	}
	var out connector.Sink[string]
	if *output == "" {
		out = sink.Print[string]("")
	} else {
		out = sink.Lines(*output)
	}

	env := stream.NewEnvironment()
	text := stream.FromSource(env, "lines", lines)
	words := stream.FlatMap(text, "split", splitWords)
	counts := stream.Process(stream.KeyBy(words, func(w string) string { return w }), "count", &countWords{})
	stream.SinkTo(counts, "out", out).SetParallelism(1)

	if err := env.Execute("wordcount"); err != nil {
		if errors.Is(err, stream.ErrJobCanceled) {
			os.Exit(130) // Ctrl-C: Execute has said so already
		}
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

// splitWords emits the words of a line: maximal runs of letters and digits,
// lower-cased.
func splitWords(line string, out stream.Collector[string]) {
	for _, w := range strings.FieldsFunc(line, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		out.Collect(strings.ToLower(w))
	}
}

// countWords counts the words of each key in keyed state and emits the
// count once the input has ended: a timer at the end of event time fires
// when the final watermark arrives.
type countWords struct {
	count stream.ValueState[int64]
}

func (c *countWords) Open(rc *stream.RuntimeContext) (err error) {
	c.count, err = stream.ValueStateOf[int64](rc, "count")
	return err
}

func (c *countWords) ProcessElement(ctx *stream.KeyedContext[string, string], word string) error {
	n, seen := c.count.Value()
	if !seen {
		ctx.TimerService().RegisterEventTimeTimer(math.MaxInt64)
	}
	c.count.Update(n + 1)
	return nil
}

func (c *countWords) OnTimer(ctx *stream.KeyedContext[string, string], _ int64, _ stream.TimeDomain) error {
	n, _ := c.count.Value()
	ctx.Collect(ctx.Key() + "\t" + strconv.FormatInt(n, 10))
	return nil
}

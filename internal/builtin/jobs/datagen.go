package jobs

import (
	"fmt"
	"strconv"

	"github.com/weirstream/weir/internal/builtin"
	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

func init() {
	builtin.Register(builtin.Job{
		Name:    "datagen",
		Summary: "generate synthetic rows: --rows N --keys K --rate R [--output FILE]",
		Main:    datagenMain,
	})
}

// Row is a synthetic record of the datagen job.
type Row struct {
	ID        int64
	Key       string
	Value     int64
	Timestamp int64
}

func formatRow(r Row) string {
	return strconv.FormatInt(r.ID, 10) + "\t" + r.Key + "\t" + strconv.FormatInt(r.Value, 10) + "\t" + strconv.FormatInt(r.Timestamp, 10)
}

func datagenMain(args []string) error {
	fs := newFlags("datagen")
	rows := fs.Int64("rows", 1_000_000, "rows to generate; -1 generates until canceled")
	keys := fs.Int("keys", 1000, "number of distinct keys")
	rate := fs.Float64("rate", 0, "rows per second across all subtasks; 0 generates as fast as possible")
	output := fs.String("output", "", "file to write `id<TAB>key<TAB>value<TAB>timestamp` lines to (default: discard)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rows < -1 {
		return fmt.Errorf("builtin:datagen: --rows %d: give the number of rows, or -1 to generate until canceled", *rows)
	}
	if *rate < 0 {
		return fmt.Errorf("builtin:datagen: --rate %g: give rows per second, or 0 to generate as fast as possible", *rate)
	}
	if *keys < 1 {
		return fmt.Errorf("builtin:datagen: --keys %d: need at least one key", *keys)
	}
	names := make([]string, *keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
	}
	const base = int64(1_700_000_000_000)
	gen := source.Generator(*rows, func(i int64) Row {
		// A multiplicative hash spreads keys without a random source.
		h := uint64(i) * 0x9E3779B97F4A7C15
		return Row{ID: i, Key: names[h%uint64(len(names))], Value: int64(h >> 40), Timestamp: base + i}
	})
	var src = gen
	if *rate > 0 {
		src = source.RateLimited(gen, *rate)
	}
	env := stream.NewEnvironment()
	data := stream.FromSource(env, "datagen", src, stream.WithTimestampAssigner(stream.ForMonotonousTimestamps[Row](), func(r Row) int64 { return r.Timestamp }))
	if *output == "" {
		stream.SinkTo(data, "out", sink.Blackhole[Row]())
	} else {
		stream.SinkTo(data, "out", sink.File(*output, formatRow)).SetParallelism(1)
	}
	return env.Execute("datagen")
}

package jobs

import (
	"fmt"
	"github.com/weirstream/weir/internal/launch"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/weirstream/weir/connector"
	"github.com/weirstream/weir/internal/builtin"
	"github.com/weirstream/weir/internal/nexmark"
	"github.com/weirstream/weir/internal/procstat"
	"github.com/weirstream/weir/sink"
	"github.com/weirstream/weir/source"
	"github.com/weirstream/weir/stream"
)

func init() {
	builtin.Register(builtin.Job{
		Name:    "nexmark",
		Summary: "a Nexmark query over generated auction events: --query q5 --events N [--output FILE]",
		Main:    nexmarkMain,
	})
}

// NexmarkQueries maps query names to their dataflows.
var NexmarkQueries = map[string]func(events *stream.DataStream[nexmark.Event], output string){
	"gen": gen, "q0": q0, "q1": q1, "q2": q2,
}

// NexmarkQueryNames lists the available queries in order.
func NexmarkQueryNames() []string {
	var out []string
	for q := range NexmarkQueries {
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool {
		return len(out[i]) < len(out[j]) || len(out[i]) == len(out[j]) && out[i] < out[j]
	})
	return out
}

// NexmarkOptions are the options of one Nexmark run.
type NexmarkOptions struct {
	Query  string
	Events int64
	Rate   float64
	Output string
}

func nexmarkMain(args []string) error {
	fs := newFlags("nexmark")
	var o NexmarkOptions
	fs.StringVar(&o.Query, "query", "q0", "query to run: "+strings.Join(NexmarkQueryNames(), ", "))
	fs.Int64Var(&o.Events, "events", 10_000_000, "events to generate; -1 generates until canceled")
	fs.Float64Var(&o.Rate, "rate", 0, "events per second across all subtasks; 0 generates as fast as possible")
	fs.StringVar(&o.Output, "output", "", "file to write result rows to (default: discard, like the suite's blackhole sink)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	env := stream.NewEnvironment()
	if err := BuildNexmark(env, o); err != nil {
		return err
	}
	cpu0, t0 := procstat.CPUSeconds(), time.Now()
	if err := env.Execute("nexmark-" + o.Query); err != nil {
		return err
	}
	// Only a run on the embedded cluster in this process measured anything:
	// in plan mode (weir run --jobmanager, weir info) and in a cluster's
	// worker, Execute returns without having run the whole job here.
	if o.Events > 0 && launch.Get().Mode == launch.Run {
		wall, cpu := time.Since(t0).Seconds(), procstat.CPUSeconds()-cpu0
		fmt.Fprintf(os.Stderr, "nexmark %s: %d events in %.2f s (%.2f CPU s): %.0f events/s, %.0f events/core-s\n",
			o.Query, o.Events, wall, cpu, float64(o.Events)/wall, float64(o.Events)/cpu)
	}
	return nil
}

// BuildNexmark adds the Nexmark source and the query's dataflow to env.
func BuildNexmark(env *stream.Environment, o NexmarkOptions) error {
	q, ok := NexmarkQueries[o.Query]
	if !ok {
		return fmt.Errorf("builtin:nexmark: unknown query %q; available: %s", o.Query, strings.Join(NexmarkQueryNames(), ", "))
	}
	if o.Events == 0 || o.Events < -1 {
		return fmt.Errorf("builtin:nexmark: --events %d: give a positive number of events, or -1 to run until canceled", o.Events)
	}
	if o.Rate < 0 {
		return fmt.Errorf("builtin:nexmark: --rate %g: give events per second, or 0 to generate as fast as possible", o.Rate)
	}
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = max(o.Events, 0)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("builtin:nexmark: %w", err)
	}
	var src connector.Source[nexmark.Event] = nexmarkSource{cfg: cfg}
	if o.Rate > 0 {
		src = source.RateLimited(src, o.Rate)
	}
	// The suite's watermark: event time minus 4 seconds.
	events := stream.FromSource(env, "nexmark", src, stream.ForBoundedOutOfOrderness[nexmark.Event](4*time.Second))
	q(events, o.Output)
	return nil
}

// nexmarkSource generates the suite's events inside the job, each subtask
// its share of event numbers: subtask i of p generates events i, i+p, ….
// Its readers are checkpointed and rescale exactly: a job restored with
// another parallelism generates each event number exactly once over its
// life (see source.IndexShare), given the same generator config.
type nexmarkSource struct{ cfg nexmark.GeneratorConfig }

func (s nexmarkSource) Open(ctx connector.SourceContext) (connector.SourceReader[nexmark.Event], error) {
	share, err := source.NewIndexShare(ctx, s.cfg.EffectiveMaxEvents())
	if err != nil {
		return nil, err
	}
	// Event n is a pure function of the config and n, so one generator
	// positioned at each number in turn generates any share.
	return &nexmarkReader{share: share, gen: nexmark.NewGenerator(s.cfg, 0, 1)}, nil
}

type nexmarkReader struct {
	share *source.IndexShare
	gen   *nexmark.Generator
	e     nexmark.Event
}

func (r *nexmarkReader) Read(out connector.SourceOutput[nexmark.Event]) (connector.ReadStatus, error) {
	return r.ReadAtMost(out, 1024)
}

// ReadAtMost implements connector.LimitedReader.
func (r *nexmarkReader) ReadAtMost(out connector.SourceOutput[nexmark.Event], n int) (connector.ReadStatus, error) {
	for range min(n, 1024) {
		i, ok := r.share.Next()
		if !ok {
			break
		}
		r.gen.SeekTo(i)
		r.gen.Next(&r.e)
		out.CollectWithTimestamp(r.e, r.e.Timestamp())
	}
	if r.share.Done() {
		return connector.EndOfInput, nil
	}
	return connector.MoreAvailable, nil
}

// SnapshotState implements connector.CheckpointedReader.
func (r *nexmarkReader) SnapshotState() ([]byte, error) { return r.share.SnapshotState() }

func (r *nexmarkReader) Close() error { return nil }

// sinkRows writes a query's rows to the output file, or discards them.
func sinkRows[R fmt.Stringer](rows *stream.DataStream[R], output string) {
	if output == "" {
		stream.SinkTo(rows, "sink", sink.Blackhole[R]())
		return
	}
	stream.SinkTo(rows, "sink", sink.File(output, R.String)).SetParallelism(1)
}

func bids(events *stream.DataStream[nexmark.Event]) *stream.DataStream[nexmark.Event] {
	return stream.Filter(events, "bids", func(e nexmark.Event) bool { return e.Type == nexmark.BidEvent })
}

// gen: the generator alone into a blackhole, the ceiling of every query.
func gen(events *stream.DataStream[nexmark.Event], output string) {
	sinkRows(stream.Map(events, "gen", func(e nexmark.Event) genRow { return genRow{e.Type, e.Timestamp()} }), output)
}

type genRow struct {
	Type nexmark.EventType
	TS   int64
}

func (r genRow) String() string { return fmt.Sprint(r.Type, "\t", r.TS) }

// q0: pass-through of every bid.
func q0(events *stream.DataStream[nexmark.Event], output string) {
	rows := stream.Map(bids(events), "q0", func(e nexmark.Event) nexmark.Q0Row {
		b := &e.Bid
		return nexmark.Q0Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel, URL: b.URL, DateTime: b.DateTime, Extra: b.Extra}
	})
	sinkRows(rows, output)
}

// q1: bid prices converted from dollars to euros.
func q1(events *stream.DataStream[nexmark.Event], output string) {
	rows := stream.Map(bids(events), "q1", func(e nexmark.Event) nexmark.Q1Row {
		b := &e.Bid
		return nexmark.Q1Row{Auction: b.Auction, Bidder: b.Bidder, Price: nexmark.Q1Price(b.Price), DateTime: b.DateTime, Extra: b.Extra}
	})
	sinkRows(rows, output)
}

// q2: bids on a selection of auctions.
func q2(events *stream.DataStream[nexmark.Event], output string) {
	selected := stream.Filter(bids(events), "q2-select", func(e nexmark.Event) bool {
		return e.Bid.Auction%nexmark.Q2AuctionModulus == 0
	})
	rows := stream.Map(selected, "q2", func(e nexmark.Event) nexmark.Q2Row {
		return nexmark.Q2Row{Auction: e.Bid.Auction, Price: e.Bid.Price}
	})
	sinkRows(rows, output)
}

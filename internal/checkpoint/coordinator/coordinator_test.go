package coordinator

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const s = time.Second

// Task lists as describe prints them.
const (
	all  = "[0/0 0/1 1/0]"
	srcs = "[0/0 0/1]"
)

func want(lines ...string) []string { return append([]string{}, lines...) }

// TestScripts runs one script per rule of the coordinator. Each step gives
// the event, when it happens, and every action expected from it.
func TestScripts(t *testing.T) {
	tests := []struct {
		name   string
		config func(*Config)
		script []step
		check  func(*testing.T, *Coordinator)
	}{
		{
			name: "periodic checkpoint is triggered on sources, acked by all, persisted, then completed",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{9 * s, Tick{}, want()}, // early tick: nothing due
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				acks(11*s, 1, src0, src1),
				step{12 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{13 * s, MetadataWritten{1}, want("complete 1 "+all, "timer @20s")},
				step{20 * s, Tick{}, want("trigger checkpoint 2 @20s "+srcs, "timer @50s")},
			),
			check: func(t *testing.T, c *Coordinator) {
				if got := c.Retained(); !slices.Equal(got, []CheckpointID{1}) {
					t.Errorf("Retained = %v, want [1]", got)
				}
				if got, want := c.Counts(), (Counts{Triggered: 2, InProgress: 1, Completed: 1}); got != want {
					t.Errorf("Counts = %+v, want %+v", got, want)
				}
				if got := c.Pending(); len(got) != 1 || got[0].ID != 2 || got[0].Phase != Pending || got[0].Expected != 3 {
					t.Errorf("Pending = %+v, want checkpoint 2 pending on 3 tasks", got)
				}
			},
		},
		{
			name:   "initial delay sets the first trigger; later ones follow the interval",
			config: func(c *Config) { c.InitialDelay = 3 * s },
			script: script(
				step{0, Start{}, want("timer @3s")},
				step{3 * s, Tick{}, want("trigger checkpoint 1 @3s "+srcs, "timer @33s")},
				acks(4*s, 1, src0, src1, sink)[:2],
				step{4 * s, ack(1, sink), want("persist checkpoint 1 @3s acks=" + all)},
				step{5 * s, MetadataWritten{1}, want("complete 1 "+all, "timer @13s")},
			),
		},
		{
			name: "a late tick triggers at once and the next interval counts from the trigger",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{25 * s, Tick{}, want("trigger checkpoint 1 @25s "+srcs, "timer @55s")},
				acks(26*s, 1, src0, src1),
				step{26 * s, ack(1, sink), want("persist checkpoint 1 @25s acks=" + all)},
				step{27 * s, MetadataWritten{1}, want("complete 1 "+all, "timer @35s")},
			),
		},
		{
			name:   "interval 0 turns periodic checkpoints off but savepoints work",
			config: func(c *Config) { c.Interval = 0 },
			script: script(
				step{0, Start{}, want()},
				step{100 * s, Tick{}, want()},
				step{105 * s, TriggerSavepoint{Request: "r1", Kind: Savepoint}, want("trigger savepoint 1 @1m45s "+srcs, "timer @2m15s")},
				acks(106*s, 1, src0, src1),
				step{106 * s, ack(1, sink), want("persist savepoint 1 @1m45s acks=" + all)},
				step{107 * s, MetadataWritten{1}, want("savepoint r1 done 1", "timer off")},
			),
			check: func(t *testing.T, c *Coordinator) {
				if got := c.Retained(); len(got) != 0 {
					t.Errorf("Retained = %v; savepoints must not be retained as checkpoints", got)
				}
			},
		},
		{
			name: "max concurrent: a due checkpoint waits for a slot, and a newer completion subsumes an older one",
			config: func(c *Config) {
				c.MaxConcurrent = 2
				c.Timeout = 60 * s
			},
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @20s")},
				step{20 * s, Tick{}, want("trigger checkpoint 2 @20s "+srcs, "timer @1m10s")},
				step{30 * s, Tick{}, want()}, // due, but two are in flight
				acks(35*s, 1, src0, src1),
				step{35 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{35 * s, MetadataWritten{1}, want("complete 1 "+all, "trigger checkpoint 3 @35s "+srcs, "timer @1m20s")},
				step{38 * s, ack(2, src0), want()},
				acks(40*s, 3, src0, src1),
				step{40 * s, ack(3, sink), want("persist checkpoint 3 @35s acks=" + all)},
				step{41 * s, MetadataWritten{3}, want(
					"abort checkpoint 2 (subsumed) acks=[0/0]", "aborted 2 "+all,
					"complete 3 "+all, "discard completed 1", "timer @45s")},
				step{42 * s, ack(2, src1), want("discard ack 2 0/1 state-2-0/1")},
			),
		},
		{
			name:   "min pause delays the next trigger after a completion",
			config: func(c *Config) { c.MinPause = 8 * s },
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				acks(17*s, 1, src0, src1),
				step{17 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{17 * s, MetadataWritten{1}, want("complete 1 "+all, "timer @25s")},
				step{20 * s, Tick{}, want()},
				step{25 * s, Tick{}, want("trigger checkpoint 2 @25s "+srcs, "timer @55s")},
				acks(26*s, 2, src0, src1),
				step{26 * s, ack(2, sink), want("persist checkpoint 2 @25s acks=" + all)},
				step{26 * s, MetadataWritten{2}, want("complete 2 "+all, "discard completed 1", "timer @35s")},
			),
		},
		{
			name: "a timeout aborts the checkpoint; with no tolerable failures it fails the job",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				step{11 * s, ack(1, src0), want()},
				step{40 * s, Tick{}, want(
					"abort checkpoint 1 (expired) acks=[0/0]", "aborted 1 "+all,
					"fail job (expired)", "timer off")},
				step{41 * s, ack(1, src1), want("discard ack 1 0/1 state-1-0/1")},
				step{41 * s, Tick{}, want()},
				step{42 * s, Start{}, want("timer @52s")},
				step{52 * s, Tick{}, want("trigger checkpoint 2 @52s "+srcs, "timer @1m22s")},
			),
			check: func(t *testing.T, c *Coordinator) {
				if got := c.Counts(); got.Failed != 1 || got.Triggered != 2 {
					t.Errorf("Counts = %+v, want 1 failed of 2 triggered", got)
				}
			},
		},
		{
			name:   "consecutive failures are counted, a success resets the count",
			config: func(c *Config) { c.TolerableFailures = 1 },
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				step{40 * s, Tick{}, want(
					"abort checkpoint 1 (expired) acks=[]", "aborted 1 "+all,
					"trigger checkpoint 2 @40s "+srcs, "timer @1m10s")},
				acks(45*s, 2, src0, src1),
				step{45 * s, ack(2, sink), want("persist checkpoint 2 @40s acks=" + all)},
				step{46 * s, MetadataWritten{2}, want("complete 2 "+all, "timer @50s")},
				step{50 * s, Tick{}, want("trigger checkpoint 3 @50s "+srcs, "timer @1m20s")},
				step{55 * s, Decline{ID: 3, Task: src1, Reason: errors.New("disk full")}, want(
					"abort checkpoint 3 (declined) acks=[]", "aborted 3 "+all, "timer @1m0s")},
				step{60 * s, Tick{}, want("trigger checkpoint 4 @1m0s "+srcs, "timer @1m30s")},
				step{90 * s, Tick{}, want(
					"abort checkpoint 4 (expired) acks=[]", "aborted 4 "+all,
					"fail job (expired)", "timer off")},
			),
		},
		{
			name: "a decline by a task that is not ready aborts without counting; stray declines are ignored",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				step{12 * s, Decline{ID: 1, Task: src0, Reason: errors.Join(errors.New("restoring"), ErrTaskNotReady)}, want(
					"abort checkpoint 1 (declined not-ready) acks=[]", "aborted 1 "+all, "timer @20s")},
				step{13 * s, Decline{ID: 1, Task: src1, Reason: errors.New("late")}, want()},
				step{20 * s, Tick{}, want("trigger checkpoint 2 @20s "+srcs, "timer @50s")},
				step{21 * s, Decline{ID: 2, Task: TaskID{9, 9}, Reason: errors.New("stranger")}, want()},
				step{21 * s, Decline{ID: 7, Task: src0, Reason: errors.New("unknown id")}, want()},
				acks(22*s, 2, src0, src1, sink)[:2],
				step{22 * s, ack(2, sink), want("persist checkpoint 2 @20s acks=" + all)},
				step{23 * s, Decline{ID: 2, Task: sink}, want()}, // every task acked: too late to decline
				step{23 * s, MetadataWritten{2}, want("complete 2 "+all, "timer @30s")},
			),
		},
		{
			name: "acks: duplicates ignored; strangers, unknown and aborted checkpoints discarded; late ones of completed ignored",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				step{11 * s, Ack{ID: 1, Task: src0, State: "a"}, want()},
				step{11 * s, Ack{ID: 1, Task: src0, State: "b"}, want()},
				step{11 * s, Ack{ID: 1, Task: TaskID{9, 9}, State: "x"}, want("discard ack 1 9/9 x")},
				step{11 * s, Ack{ID: 7, Task: src0, State: "y"}, want("discard ack 7 0/0 y")},
				step{11 * s, Ack{ID: 0, Task: src0, State: "z"}, want("discard ack 0 0/0 z")},
				step{12 * s, ack(1, src1), want()},
				step{12 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{12 * s, ack(1, sink), want()}, // duplicate while persisting
				step{13 * s, MetadataWritten{1}, want("complete 1 "+all, "timer @20s")},
				step{14 * s, Ack{ID: 1, Task: src0, State: "late"}, want()},
				step{14 * s, MetadataWritten{1}, want()},
			),
		},
		{
			name: "finished tasks leave later plans; a checkpoint waiting for one is aborted; no trigger once all sources finished",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				acks(11*s, 1, src0, src1),
				step{12 * s, TaskFinished{src0}, want()}, // acked already
				step{12 * s, TaskFinished{TaskID{9, 9}}, want()},
				step{13 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{13 * s, MetadataWritten{1}, want("complete 1 [0/1 1/0]", "timer @20s")},
				step{20 * s, Tick{}, want("trigger checkpoint 2 @20s [0/1]", "timer @50s")},
				step{21 * s, ack(2, src1), want()},
				step{21 * s, ack(2, src0), want("discard ack 2 0/0 state-2-0/0")},
				step{21 * s, ack(2, sink), want("persist checkpoint 2 @20s acks=[0/1 1/0] finished=[0/0]")},
				step{22 * s, MetadataWritten{2}, want("complete 2 [0/1 1/0]", "discard completed 1", "timer @30s")},
				step{30 * s, Tick{}, want("trigger checkpoint 3 @30s [0/1]", "timer @1m0s")},
				step{31 * s, TaskFinished{src1}, want(
					"abort checkpoint 3 (task finished) acks=[]", "aborted 3 [1/0]", "timer off")},
				step{32 * s, TriggerSavepoint{Request: "r1", Kind: Savepoint}, want("savepoint r1 failed 0 (refused)")},
				step{40 * s, Tick{}, want()},
				step{50 * s, Stop{}, want()},
				step{51 * s, Start{}, want("timer @1m1s")},
				step{61 * s, Tick{}, want("trigger checkpoint 4 @1m1s "+srcs, "timer @1m31s")},
			),
			check: func(t *testing.T, c *Coordinator) {
				if c.ConsecutiveFailures() != 0 {
					t.Errorf("a finished task counted as a checkpoint failure")
				}
			},
		},
		{
			name:   "a savepoint bypasses max concurrent, is not subsumed, and neither subsumes nor notifies",
			config: func(c *Config) { c.MaxConcurrent = 2 },
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @20s")},
				step{12 * s, TriggerSavepoint{Request: "sp", Kind: Savepoint, Drain: true}, want("trigger savepoint 2 @12s "+srcs, "timer @40s")},
				step{13 * s, TriggerSavepoint{Request: "sp2", Kind: Savepoint}, want("trigger savepoint 3 @13s " + srcs)},
				step{20 * s, Tick{}, want()}, // three in flight, max 2
				acks(21*s, 1, src0, src1),
				step{21 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{22 * s, MetadataWritten{1}, want("complete 1 "+all, "timer @42s")}, // savepoints 2 and 3 still hold both slots
				acks(23*s, 2, src0, src1),
				step{23 * s, ack(2, sink), want("persist savepoint 2 @12s acks=" + all)},
				step{24 * s, MetadataWritten{2}, want("savepoint sp done 2", "trigger checkpoint 4 @24s "+srcs, "timer @43s")},
				acks(25*s, 4, src0, src1),
				step{25 * s, ack(4, sink), want("persist checkpoint 4 @24s acks=" + all)},
				step{26 * s, MetadataWritten{4}, want("complete 4 "+all, "discard completed 1", "timer @34s")},
				acks(27*s, 3, src0, src1),
				step{27 * s, ack(3, sink), want("persist savepoint 3 @13s acks=" + all)},
				step{28 * s, MetadataWritten{3}, want("savepoint sp2 done 3")},
			),
		},
		{
			name: "a savepoint completing resets failure counting for older checkpoints (Flink's lastSucceededCheckpointId)",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				step{12 * s, TriggerSavepoint{Request: "sp", Kind: Savepoint}, want("trigger savepoint 2 @12s " + srcs)},
				acks(13*s, 2, src0, src1),
				step{13 * s, ack(2, sink), want("persist savepoint 2 @12s acks=" + all)},
				step{14 * s, MetadataWritten{2}, want("savepoint sp done 2")},
				step{40 * s, Tick{}, want( // no FailJob: 1 is older than the last success
					"abort checkpoint 1 (expired) acks=[]", "aborted 1 "+all,
					"trigger checkpoint 3 @40s "+srcs, "timer @1m10s")},
			),
		},
		{
			name: "savepoint failures never fail the job",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{5 * s, TriggerSavepoint{Request: "sp", Kind: Savepoint}, want("trigger savepoint 1 @5s "+srcs, "timer @35s")},
				step{6 * s, Decline{ID: 1, Task: sink, Reason: errors.New("boom")}, want(
					"abort savepoint 1 (declined) acks=[]", "aborted 1 "+all, "savepoint sp failed 1 (declined)", "timer @10s")},
				step{7 * s, TriggerSavepoint{Request: "sp2", Kind: Savepoint}, want("trigger savepoint 2 @7s "+srcs, "timer @37s")},
				step{10 * s, Tick{}, want()}, // savepoint 2 holds the only slot
				step{37 * s, Tick{}, want(
					"abort savepoint 2 (expired) acks=[]", "aborted 2 "+all, "savepoint sp2 failed 2 (expired)",
					"trigger checkpoint 3 @37s "+srcs, "timer @1m7s")},
				step{38 * s, TriggerSavepoint{Request: "bad", Kind: Checkpoint}, want("savepoint bad failed 0 (refused)")},
			),
		},
		{
			name: "stop-with-savepoint pauses periodic checkpoints, subsumes, notifies, and ends checkpointing",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				step{12 * s, TriggerSavepoint{Request: "stop", Kind: StopWithSavepoint, Drain: true}, want("trigger stop-with-savepoint 2 @12s drain " + srcs)},
				step{13 * s, TriggerSavepoint{Request: "sp", Kind: Savepoint}, want("savepoint sp failed 0 (refused)")},
				step{13 * s, TriggerSavepoint{Request: "stop2", Kind: StopWithSavepoint}, want("savepoint stop2 failed 0 (refused)")},
				acks(14*s, 2, src0, src1),
				step{14 * s, ack(2, sink), want("persist stop-with-savepoint 2 @12s acks=" + all)},
				step{15 * s, MetadataWritten{2}, want(
					"abort checkpoint 1 (subsumed) acks=[]", "aborted 1 "+all,
					"complete 2 "+all, "savepoint stop done 2", "timer off")},
				step{30 * s, Tick{}, want()},
				step{31 * s, TriggerSavepoint{Request: "sp3", Kind: Savepoint}, want("savepoint sp3 failed 0 (refused)")},
				step{40 * s, Stop{}, want()},
				step{41 * s, Start{}, want("timer @51s")}, // the job failed to finish and restarts
			),
			check: func(t *testing.T, c *Coordinator) {
				if got := c.Retained(); len(got) != 0 {
					t.Errorf("Retained = %v; a stop-with-savepoint is not a retained checkpoint", got)
				}
			},
		},
		{
			name: "a failed stop-with-savepoint resumes periodic checkpoints and is not counted",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{5 * s, TriggerSavepoint{Request: "stop", Kind: StopWithSavepoint}, want("trigger stop-with-savepoint 1 @5s "+srcs, "timer @35s")},
				step{10 * s, Tick{}, want()},
				step{12 * s, Decline{ID: 1, Task: sink, Reason: errors.New("boom")}, want(
					"abort stop-with-savepoint 1 (declined) acks=[]", "aborted 1 "+all, "savepoint stop failed 1 (declined)",
					"trigger checkpoint 2 @12s "+srcs, "timer @42s")},
			),
		},
		{
			name: "Stop aborts everything in flight without counting; Start resumes and IDs continue",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				step{11 * s, TriggerSavepoint{Request: "sp", Kind: Savepoint}, want("trigger savepoint 2 @11s " + srcs)},
				step{11 * s, ack(2, src0), want()},
				step{12 * s, Stop{}, want(
					"abort checkpoint 1 (stopped) acks=[]", "aborted 1 "+all,
					"abort savepoint 2 (stopped) acks=[0/0]", "aborted 2 "+all, "savepoint sp failed 2 (stopped)",
					"timer off")},
				step{13 * s, TriggerSavepoint{Request: "sp2", Kind: Savepoint}, want("savepoint sp2 failed 0 (stopped)")},
				step{13 * s, ack(1, src0), want("discard ack 1 0/0 state-1-0/0")},
				step{14 * s, MetadataWritten{1}, want("discard metadata 1")},
				step{15 * s, Stop{}, want()},
				step{20 * s, Start{}, want("timer @30s")},
				step{21 * s, Start{}, want()},
				step{30 * s, Tick{}, want("trigger checkpoint 3 @30s "+srcs, "timer @1m0s")},
			),
			check: func(t *testing.T, c *Coordinator) {
				if c.ConsecutiveFailures() != 0 {
					t.Errorf("Stop counted as a checkpoint failure")
				}
				if c.NextID() != 4 {
					t.Errorf("NextID = %d, want 4", c.NextID())
				}
			},
		},
		{
			name: "a failed metadata write aborts the checkpoint and counts",
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				acks(11*s, 1, src0, src1),
				step{12 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{13 * s, MetadataFailed{ID: 7, Err: errors.New("unknown")}, want()},
				step{13 * s, MetadataFailed{ID: 1, Err: errors.New("disk full")}, want(
					"abort checkpoint 1 (metadata) acks="+all, "aborted 1 "+all, "fail job (metadata)", "timer off")},
			),
		},
		{
			name:   "a checkpoint expiring while persisting is aborted; metadata written afterwards is discarded",
			config: func(c *Config) { c.TolerableFailures = 1 },
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 1 @10s "+srcs, "timer @40s")},
				acks(11*s, 1, src0, src1),
				step{11 * s, ack(1, sink), want("persist checkpoint 1 @10s acks=" + all)},
				step{40 * s, Tick{}, want(
					"abort checkpoint 1 (expired) acks="+all, "aborted 1 "+all,
					"trigger checkpoint 2 @40s "+srcs, "timer @1m10s")},
				step{41 * s, MetadataWritten{1}, want("discard metadata 1")},
				step{42 * s, MetadataWritten{2}, want()}, // not asked to persist yet
				step{42 * s, MetadataFailed{ID: 2, Err: errors.New("x")}, want()},
			),
		},
		{
			name: "the ID counter starts at FirstID and retention covers restored checkpoints",
			config: func(c *Config) {
				c.FirstID = 42
				c.Retained = []CheckpointID{40, 41}
				c.NumRetained = 2
			},
			script: script(
				step{0, Start{}, want("timer @10s")},
				step{10 * s, Tick{}, want("trigger checkpoint 42 @10s "+srcs, "timer @40s")},
				acks(11*s, 42, src0, src1),
				step{11 * s, ack(42, sink), want("persist checkpoint 42 @10s acks=" + all)},
				step{12 * s, MetadataWritten{42}, want("complete 42 "+all, "discard completed 40", "timer @20s")},
				step{13 * s, ack(41, src0), want()}, // a retained checkpoint's files are not discarded
				step{13 * s, ack(39, src0), want("discard ack 39 0/0 state-39-0/0")},
			),
			check: func(t *testing.T, c *Coordinator) {
				if got := c.Retained(); !slices.Equal(got, []CheckpointID{41, 42}) {
					t.Errorf("Retained = %v, want [41 42]", got)
				}
				if c.NextID() != 43 {
					t.Errorf("NextID = %d, want 43", c.NextID())
				}
			},
		},
		{
			name: "events before Start trigger nothing",
			script: script(
				step{0, Tick{}, want()},
				step{1 * s, TriggerSavepoint{Request: "sp", Kind: Savepoint}, want("savepoint sp failed 0 (stopped)")},
				step{2 * s, ack(1, src0), want("discard ack 1 0/0 state-1-0/0")},
				step{3 * s, MetadataWritten{1}, want("discard metadata 1")},
				step{4 * s, Stop{}, want()},
			),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.config != nil {
				tc.config(&cfg)
			}
			h := newHarness(t, cfg)
			h.run(tc.script)
			if tc.check != nil {
				tc.check(t, h.c)
			}
		})
	}
}

// TestReasons checks what the abort and FailJob errors say, beyond the
// sentinel they wrap.
func TestReasons(t *testing.T) {
	h := newHarness(t, testConfig())
	h.at(0, Start{})
	h.at(10*s, Tick{})
	h.at(11*s, ack(1, src0))
	acts := h.at(40*s, Tick{})
	abort := acts[0].(AbortCheckpoint)
	for _, part := range []string{"checkpoint 1 expired", "30s timeout", "1 of 3 tasks acknowledged", "waiting for 0/1, 1/0"} {
		if !strings.Contains(abort.Reason.Error(), part) {
			t.Errorf("expiry reason %q does not say %q", abort.Reason, part)
		}
	}
	fail := acts[2].(FailJob)
	for _, part := range []string{"execution.checkpointing.tolerable-failed-checkpoints=0", "raise it", "checkpoint 1 expired"} {
		if !strings.Contains(fail.Reason.Error(), part) {
			t.Errorf("FailJob reason %q does not say %q", fail.Reason, part)
		}
	}
	if !errors.Is(fail.Reason, ErrTooManyFailures) || !errors.Is(fail.Reason, ErrExpired) {
		t.Errorf("FailJob reason %q must wrap ErrTooManyFailures and the last failure", fail.Reason)
	}

	h = newHarness(t, testConfig())
	h.at(0, Start{})
	h.at(10*s, Tick{})
	cause := errors.New("disk full")
	acts = h.at(11*s, Decline{ID: 1, Task: sink, Reason: cause})
	abort = acts[0].(AbortCheckpoint)
	if !errors.Is(abort.Reason, cause) || !errors.Is(abort.Reason, ErrDeclined) ||
		!strings.Contains(abort.Reason.Error(), "checkpoint 1 declined by task 1/0: disk full") {
		t.Errorf("decline reason %q must name the task and wrap its cause and ErrDeclined", abort.Reason)
	}
}

func TestPhaseTransitions(t *testing.T) {
	phases := []Phase{Pending, Persisting, Completed, Aborted}
	legal := map[[2]Phase]bool{
		{Pending, Persisting}:   true,
		{Pending, Aborted}:      true,
		{Persisting, Completed}: true,
		{Persisting, Aborted}:   true,
	}
	for _, from := range phases {
		for _, to := range phases {
			if got := from.canMoveTo(to); got != legal[[2]Phase{from, to}] {
				t.Errorf("%s -> %s allowed = %v, want %v", from, to, got, !got)
			}
			panicked := func() (p bool) {
				defer func() { p = recover() != nil }()
				(&inFlight{id: 1, phase: from}).moveTo(to)
				return false
			}()
			if panicked == legal[[2]Phase{from, to}] {
				t.Errorf("moveTo %s -> %s: panicked = %v", from, to, panicked)
			}
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no tasks", func(c *Config) { c.Tasks = nil }, "no tasks"},
		{"no sources", func(c *Config) { c.Sources = nil }, "no source tasks"},
		{"source not a task", func(c *Config) { c.Sources = []TaskID{{5, 0}} }, "source 5/0 is not one of the job's tasks"},
		{"duplicate task", func(c *Config) { c.Tasks = append(c.Tasks, src0) }, "task 0/0 listed twice"},
		{"duplicate source", func(c *Config) { c.Sources = []TaskID{src0, src0} }, "source 0/0 listed twice"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"negative interval", func(c *Config) { c.Interval = -s }, "negative interval"},
		{"negative min pause", func(c *Config) { c.MinPause = -s }, "negative min pause"},
		{"zero max concurrent", func(c *Config) { c.MaxConcurrent = 0 }, "max concurrent"},
		{"negative tolerable", func(c *Config) { c.TolerableFailures = -1 }, "tolerable"},
		{"zero retained", func(c *Config) { c.NumRetained = 0 }, "retained checkpoints 0"},
		{"negative initial delay", func(c *Config) { c.InitialDelay = -s }, "initial delay"},
		{"negative first id", func(c *Config) { c.FirstID = -1 }, "first checkpoint ID"},
		{"retained not increasing", func(c *Config) { c.FirstID = 10; c.Retained = []CheckpointID{3, 2} }, "increasing"},
		{"retained at first id", func(c *Config) { c.FirstID = 3; c.Retained = []CheckpointID{3} }, "not below the first ID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestActionStrings(t *testing.T) {
	at := t0.Add(90 * time.Minute)
	for _, tc := range []struct {
		a    interface{ String() string }
		want string
	}{
		{TriggerCheckpoint{ID: 3, Timestamp: at, Kind: StopWithSavepoint, Drain: true, Tasks: []TaskID{src0}}, "trigger stop-with-savepoint 3 at 01:30:00.000 drain to [0/0]"},
		{PersistCheckpoint{ID: 3, Kind: Checkpoint, Acks: map[TaskID]any{src0: 1}, Finished: []TaskID{sink}}, "persist checkpoint 3 (1 acks) finished [1/0]"},
		{NotifyComplete{ID: 3, Tasks: []TaskID{src0, sink}}, "notify complete 3 to [0/0 1/0]"},
		{AbortCheckpoint{ID: 3, Kind: Savepoint, Reason: ErrExpired}, "abort savepoint 3 (0 acks): expired"},
		{NotifyAborted{ID: 3}, "notify aborted 3 to []"},
		{SavepointDone{Request: "r", ID: 3}, `savepoint "r" done: 3`},
		{SavepointDone{Request: "r", Err: ErrRefused}, `savepoint "r" done: 0 failed: savepoint request refused`},
		{FailJob{Reason: ErrTooManyFailures}, "fail job: too many consecutive failed checkpoints"},
		{SetTimer{At: at}, "timer at 01:30:00.000"},
		{SetTimer{}, "cancel timer"},
		{DiscardAck{ID: 3, Task: sink}, "discard ack 3 from 1/0"},
		{DiscardMetadata{ID: 3}, "discard metadata 3"},
		{DiscardCompleted{ID: 3}, "discard completed 3"},
		{Kind(9), "Kind(9)"},
		{Phase(9), "Phase(9)"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestTimeGoingBackIsClamped(t *testing.T) {
	c, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.Handle(t0.Add(10*s), Start{})
	got := describe(c.Handle(t0.Add(5*s), TriggerSavepoint{Request: "sp", Kind: Savepoint}))
	if want := want("trigger savepoint 1 @10s "+srcs, "timer @40s"); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if err := c.checkInvariants(t0.Add(10 * s)); err != nil {
		t.Fatal(err)
	}
}

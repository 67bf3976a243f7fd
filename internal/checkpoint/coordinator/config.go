package coordinator

import (
	"fmt"
	"slices"
	"time"

	"github.com/weirstream/weir/internal/config"
)

// Flink's lower bound for the checkpoint interval and timeout
// (CheckpointConfig.MINIMAL_CHECKPOINT_TIME).
const minimalCheckpointTime = 10 * time.Millisecond

// Options are the job's checkpointing settings, read from the configuration
// by OptionsFromConfig.
type Options struct {
	// Interval between periodic checkpoints; 0 turns them off (savepoints
	// still work).
	Interval time.Duration
	// Timeout after which an unfinished checkpoint or savepoint is aborted.
	Timeout time.Duration
	// MinPause between the last completion and the next periodic trigger.
	MinPause time.Duration
	// MaxConcurrent periodic checkpoints in flight (savepoints count as in
	// flight but are not limited).
	MaxConcurrent int
	// TolerableFailures: consecutive failed checkpoints allowed; one more
	// fails the job.
	TolerableFailures int
	// NumRetained completed checkpoints kept.
	NumRetained int
}

// DefaultOptions are Flink's defaults, with periodic checkpoints off.
func DefaultOptions() Options {
	return Options{Timeout: 10 * time.Minute, MaxConcurrent: 1, NumRetained: 1}
}

// OptionsFromConfig reads and checks the execution.checkpointing.* and
// state.checkpoints.num-retained keys.
func OptionsFromConfig(c *config.Config) (Options, error) {
	o := Options{
		Interval:          c.Duration(config.CheckpointingInterval),
		Timeout:           c.Duration(config.CheckpointingTimeout),
		MinPause:          c.Duration(config.CheckpointingMinPause),
		MaxConcurrent:     c.Int(config.MaxConcurrentCheckpoints),
		TolerableFailures: c.Int(config.TolerableFailedCheckpoints),
		NumRetained:       c.Int(config.CheckpointsNumRetained),
	}
	bad := func(k config.Key, v any, fix string) error {
		return fmt.Errorf("config %s=%v: %s", k.Name, v, fix)
	}
	switch {
	case o.Interval < 0:
		return o, bad(config.CheckpointingInterval, o.Interval, "must not be negative; set it to 0 to turn periodic checkpoints off")
	case o.Interval > 0 && o.Interval < minimalCheckpointTime:
		return o, bad(config.CheckpointingInterval, o.Interval, "below the 10ms minimum; set 10ms or more, or 0 to turn periodic checkpoints off")
	case o.Timeout < minimalCheckpointTime:
		return o, bad(config.CheckpointingTimeout, o.Timeout, "below the 10ms minimum; set 10ms or more (default 10min)")
	case o.MinPause < 0:
		return o, bad(config.CheckpointingMinPause, o.MinPause, "must not be negative; set 0 for no pause")
	case o.MaxConcurrent < 1:
		return o, bad(config.MaxConcurrentCheckpoints, o.MaxConcurrent, "must be at least 1")
	case o.TolerableFailures < 0:
		return o, bad(config.TolerableFailedCheckpoints, o.TolerableFailures, "must not be negative; 0 fails the job on the first failed checkpoint")
	case o.NumRetained < 1:
		return o, bad(config.CheckpointsNumRetained, o.NumRetained, "must be at least 1")
	}
	return o, nil
}

// Config is everything a Coordinator needs for one job.
type Config struct {
	Options

	// Sources are the tasks that receive TriggerCheckpoint (they start the
	// barriers). Every source is also in Tasks.
	Sources []TaskID
	// Tasks are all the job's tasks: each must acknowledge every checkpoint
	// triggered while it runs, and is notified of completions and aborts.
	Tasks []TaskID

	// FirstID is the ID of the first checkpoint this coordinator triggers;
	// 0 means 1. After a master failover it must exceed every ID ever
	// issued for the job (the HA checkpoint-ID counter), not only the
	// restored checkpoint's: an ID in between may name a checkpoint that was
	// triggered and whose leftover files would collide.
	FirstID CheckpointID
	// Retained are the completed checkpoints already kept for this job
	// (restored from the completed-checkpoint store), oldest first.
	Retained []CheckpointID

	// InitialDelay is the delay from Start to the first periodic checkpoint;
	// 0 means one Interval. Flink picks a random delay between min-pause and
	// the interval to spread the checkpoints of many jobs; a runner that
	// wants that passes one in.
	InitialDelay time.Duration
}

func (cfg *Config) validate() error {
	o := cfg.Options
	switch {
	case o.Interval < 0:
		return fmt.Errorf("checkpoint coordinator: negative interval %v", o.Interval)
	case o.Timeout <= 0:
		return fmt.Errorf("checkpoint coordinator: timeout %v must be positive", o.Timeout)
	case o.MinPause < 0:
		return fmt.Errorf("checkpoint coordinator: negative min pause %v", o.MinPause)
	case o.MaxConcurrent < 1:
		return fmt.Errorf("checkpoint coordinator: max concurrent checkpoints %d must be at least 1", o.MaxConcurrent)
	case o.TolerableFailures < 0:
		return fmt.Errorf("checkpoint coordinator: negative tolerable failed checkpoints %d", o.TolerableFailures)
	case o.NumRetained < 1:
		return fmt.Errorf("checkpoint coordinator: retained checkpoints %d must be at least 1", o.NumRetained)
	case cfg.InitialDelay < 0:
		return fmt.Errorf("checkpoint coordinator: negative initial delay %v", cfg.InitialDelay)
	case cfg.FirstID < 0:
		return fmt.Errorf("checkpoint coordinator: negative first checkpoint ID %d", cfg.FirstID)
	case len(cfg.Tasks) == 0:
		return fmt.Errorf("checkpoint coordinator: the job has no tasks")
	case len(cfg.Sources) == 0:
		return fmt.Errorf("checkpoint coordinator: the job has no source tasks to trigger checkpoints on")
	}
	all := make(map[TaskID]bool, len(cfg.Tasks))
	for _, t := range cfg.Tasks {
		if all[t] {
			return fmt.Errorf("checkpoint coordinator: task %s listed twice", t)
		}
		all[t] = true
	}
	srcs := make(map[TaskID]bool, len(cfg.Sources))
	for _, s := range cfg.Sources {
		if srcs[s] {
			return fmt.Errorf("checkpoint coordinator: source %s listed twice", s)
		}
		if !all[s] {
			return fmt.Errorf("checkpoint coordinator: source %s is not one of the job's tasks", s)
		}
		srcs[s] = true
	}
	first := max(cfg.FirstID, 1)
	for i, id := range cfg.Retained {
		if i > 0 && id <= cfg.Retained[i-1] {
			return fmt.Errorf("checkpoint coordinator: retained checkpoints %v are not in increasing order", cfg.Retained)
		}
		if id >= first {
			return fmt.Errorf("checkpoint coordinator: retained checkpoint %d is not below the first ID %d; "+
				"start the ID counter after the retained checkpoints", id, first)
		}
	}
	return nil
}

func sortedTasks(ts []TaskID) []TaskID {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b TaskID) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	return out
}

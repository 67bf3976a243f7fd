package coordinator

import (
	"testing"
	"time"
)

func TestCheckpointNowTriggersBeforeTheInterval(t *testing.T) {
	task := TaskID{Vertex: 1}
	c, err := New(Config{Options: Options{Interval: time.Hour, Timeout: time.Minute, MaxConcurrent: 1, NumRetained: 1},
		Sources: []TaskID{task}, Tasks: []TaskID{task}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	c.Handle(t0, Start{})
	var triggered []CheckpointID
	for _, a := range c.Handle(t0.Add(time.Second), CheckpointNow{}) {
		if tr, ok := a.(TriggerCheckpoint); ok {
			triggered = append(triggered, tr.ID)
		}
	}
	if len(triggered) != 1 {
		t.Fatalf("CheckpointNow triggered %v, want one checkpoint at once", triggered)
	}
	// With one pending and max concurrent 1, another request waits.
	for _, a := range c.Handle(t0.Add(2*time.Second), CheckpointNow{}) {
		if _, ok := a.(TriggerCheckpoint); ok {
			t.Fatal("CheckpointNow exceeded max concurrent checkpoints")
		}
	}
}

package rest

import (
	"context"
	"sync"
	"time"

	"github.com/weirstream/weir/internal/jobmaster"
)

// fakeControl is a job master as the REST API sees it. Each
// TriggerSavepoint call is handed to the test on calls and waits for the
// test's answer (or its context).
type fakeControl struct {
	mu      sync.Mutex
	status  jobmaster.Status
	cancels int
	calls   chan savepointCall
}

type savepointCall struct {
	dir         string
	stop, drain bool
	reply       chan savepointAnswer
}

type savepointAnswer struct {
	path string
	err  error
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newFake(id, name, state string) *fakeControl {
	return &fakeControl{
		status: jobmaster.Status{JobID: id, Name: name, State: state, StartTime: t0,
			Timestamps: map[string]time.Time{"INITIALIZING": t0, state: t0.Add(time.Second)}},
		calls: make(chan savepointCall, 4),
	}
}

func (f *fakeControl) Status() jobmaster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	s.Timestamps = map[string]time.Time{}
	for k, v := range f.status.Timestamps {
		s.Timestamps[k] = v
	}
	return s
}

func (f *fakeControl) set(fn func(s *jobmaster.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

func (f *fakeControl) Cancel() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels++
	f.status.State = "CANCELING"
}

func (f *fakeControl) TriggerSavepoint(ctx context.Context, dir string, stop, drain bool) (string, error) {
	c := savepointCall{dir: dir, stop: stop, drain: drain, reply: make(chan savepointAnswer, 1)}
	select {
	case f.calls <- c:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case a := <-c.reply:
		return a.path, a.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

var _ jobmaster.Control = (*fakeControl)(nil)

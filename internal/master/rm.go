package master

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/weirstream/weir/internal/heartbeat"
	"github.com/weirstream/weir/internal/pb/clusterpb"
	"github.com/weirstream/weir/internal/resource"
	"github.com/weirstream/weir/internal/rest"
	"github.com/weirstream/weir/internal/slotmanager"
)

// resourceManager is the master's ResourceManager: it keeps the registered
// TaskManagers and their sessions, runs the SlotManager's decisions and
// watches heartbeats. One goroutine (run) owns all of its state; the gRPC
// handlers and the jobs reach it through do.
type resourceManager struct {
	leaderID   string
	version    string
	interval   time.Duration
	timeout    time.Duration
	log        func(string, ...any)
	slots      *slotmanager.Manager
	hb         *heartbeat.Monitor
	tms        map[string]*tmSession
	jobs       map[string]jobSink
	mail       chan func()
	seq        int64
	done       chan struct{}
	rpcAddress string
}

// jobSink is how the ResourceManager tells a job's JobMaster about its
// slots and workers. Methods must not block: they enqueue.
type jobSink interface {
	jobMasterID() string
	slotOffered(tm string, offer *clusterpb.SlotOffer)
	slotLost(a slotmanager.Allocation, reason string)
	slotTimeout(err error)
	workerExited(tm string, w *clusterpb.WorkerExited)
	workerStartFailed(tm string, w *clusterpb.WorkerStartFailed)
}

// tmSession is one TaskManager's Connect stream.
type tmSession struct {
	reg          *clusterpb.RegisterTaskManager
	peer         string
	send         chan *clusterpb.MasterMessage
	ctx          context.Context
	cancel       context.CancelCauseFunc
	registeredAt time.Time
	lastBeat     time.Time
	report       []*clusterpb.SlotStatus
}

func (s *tmSession) id() string { return s.reg.ResourceId }

// describe names a TaskManager in messages: id, host and pid.
func (s *tmSession) describe() string {
	return fmt.Sprintf("TaskManager %s (%s, pid %d)", s.reg.ResourceId, s.reg.Hostname, s.reg.Pid)
}

func newResourceManager(o slotmanager.Options, version string, interval, timeout time.Duration, log func(string, ...any)) *resourceManager {
	return &resourceManager{
		leaderID: newID(), version: version, interval: interval, timeout: timeout, log: log,
		slots: slotmanager.New(o), hb: heartbeat.New(timeout),
		tms: map[string]*tmSession{}, jobs: map[string]jobSink{},
		mail: make(chan func(), 1024), done: make(chan struct{}),
	}
}

// do runs f on the ResourceManager's goroutine.
func (rm *resourceManager) do(f func()) {
	select {
	case rm.mail <- f:
	case <-rm.done:
	}
}

// call runs f on the ResourceManager's goroutine and waits for it.
func call[T any](rm *resourceManager, f func() T) T {
	c := make(chan T, 1)
	rm.do(func() { c <- f() })
	select {
	case v := <-c:
		return v
	case <-rm.done:
		var zero T
		return zero
	}
}

func (rm *resourceManager) run(ctx context.Context) {
	defer close(rm.done)
	tick := time.NewTicker(rm.interval)
	defer tick.Stop()
	for {
		select {
		case f := <-rm.mail:
			f()
		case now := <-tick.C:
			rm.tick(now)
		case <-ctx.Done():
			for _, s := range rm.tms {
				s.cancel(fmt.Errorf("master shutting down"))
			}
			return
		}
	}
}

func (rm *resourceManager) tick(now time.Time) {
	rm.seq++
	for _, s := range rm.tms {
		rm.sendTo(s, &clusterpb.MasterMessage{Msg: &clusterpb.MasterMessage_Heartbeat{Heartbeat: &clusterpb.HeartbeatRequest{Seq: rm.seq}}})
	}
	for _, id := range rm.hb.Expired(now) {
		if s := rm.tms[id]; s != nil {
			rm.lost(s, fmt.Sprintf("no heartbeat for %v (heartbeat.timeout)", rm.timeout), now)
		}
	}
	rm.apply(rm.slots.Tick(now))
}

// sendTo queues a message for a TaskManager; a TaskManager that cannot
// keep up with its control messages is disconnected.
func (rm *resourceManager) sendTo(s *tmSession, m *clusterpb.MasterMessage) {
	m.LeaderId = rm.leaderID
	select {
	case s.send <- m:
	default:
		s.cancel(fmt.Errorf("%s does not read its control messages", s.describe()))
	}
}

// register admits a TaskManager (on the ResourceManager's goroutine); an
// error is the reason to refuse it.
func (rm *resourceManager) register(s *tmSession, now time.Time) error {
	r := s.reg
	if r.Version != rm.version {
		return fmt.Errorf("TaskManager %s runs weir %s, the master runs weir %s; run the same version everywhere", r.ResourceId, r.Version, rm.version)
	}
	if len(r.Slots) == 0 {
		return fmt.Errorf("TaskManager %s offers no slots; start it with --slots 1 or more", r.ResourceId)
	}
	if old := rm.tms[r.ResourceId]; old != nil {
		if old.reg.Hostname != r.Hostname || old.reg.Pid != r.Pid {
			return fmt.Errorf("a TaskManager with resource id %s is already registered (%s, from %s); give each TaskManager its own taskmanager.resource-id",
				r.ResourceId, old.describe(), old.peer)
		}
		// The same TaskManager process on a new session: it gave the old
		// one up (it heard nothing for heartbeat.timeout, e.g. while this
		// master was paused) before this side noticed. Refusing it would
		// end it; its old session is dead, so it replaces it.
		rm.lost(old, "it registered again on a new session", now)
	}
	profiles := make([]resource.Profile, len(r.Slots))
	for i, p := range r.Slots {
		profiles[i] = profileFromPB(p)
	}
	actions, err := rm.slots.RegisterTaskManager(r.ResourceId, profiles, now)
	if err != nil {
		return err
	}
	s.registeredAt, s.lastBeat = now, now
	rm.tms[r.ResourceId] = s
	rm.hb.Add(r.ResourceId, now)
	rm.sendTo(s, &clusterpb.MasterMessage{Msg: &clusterpb.MasterMessage_Registered{Registered: &clusterpb.Registered{
		LeaderId: rm.leaderID, HeartbeatIntervalMillis: rm.interval.Milliseconds(), HeartbeatTimeoutMillis: rm.timeout.Milliseconds()}}})
	rm.log("%s registered from %s: %d slots, %s", s.describe(), s.peer, len(r.Slots), profileFromPB(r.Total))
	rm.apply(actions)
	return nil
}

// lost forgets a TaskManager: its slots are gone, the jobs that held them
// are told.
func (rm *resourceManager) lost(s *tmSession, reason string, now time.Time) {
	if rm.tms[s.id()] != s {
		return
	}
	delete(rm.tms, s.id())
	rm.hb.Remove(s.id())
	s.cancel(fmt.Errorf("%s", reason))
	rm.log("%s lost: %s", s.describe(), reason)
	rm.apply(rm.slots.UnregisterTaskManager(s.id(), now))
}

func (rm *resourceManager) onMessage(s *tmSession, m *clusterpb.TaskManagerMessage, now time.Time) {
	if rm.tms[s.id()] != s {
		return // a session that was already dropped
	}
	switch m := m.Msg.(type) {
	case *clusterpb.TaskManagerMessage_Heartbeat:
		rm.hb.Received(s.id(), now)
		s.lastBeat = now
		s.report = m.Heartbeat.Slots
	case *clusterpb.TaskManagerMessage_SlotOffer:
		o := m.SlotOffer
		j := rm.jobs[o.JobId]
		if o.Error != "" {
			rm.log("%s could not reserve slot %d for job %s: %s", s.describe(), o.SlotIndex, o.JobId, o.Error)
			rm.apply(rm.slots.Free(o.AllocationId, now))
			return
		}
		if j == nil || j.jobMasterID() != o.JobMasterId {
			// The job is gone or has a new JobMaster: the slot is free again.
			rm.apply(rm.slots.Free(o.AllocationId, now))
			return
		}
		j.slotOffered(s.id(), o)
	case *clusterpb.TaskManagerMessage_WorkerExited:
		if j := rm.jobs[m.WorkerExited.JobId]; j != nil {
			j.workerExited(s.id(), m.WorkerExited)
		}
	case *clusterpb.TaskManagerMessage_WorkerStartFailed:
		if j := rm.jobs[m.WorkerStartFailed.JobId]; j != nil {
			j.workerStartFailed(s.id(), m.WorkerStartFailed)
		}
	case *clusterpb.TaskManagerMessage_Register:
		rm.lost(s, "registered twice on one connection", now)
	}
}

// apply carries out the SlotManager's decisions.
func (rm *resourceManager) apply(actions []slotmanager.Action) {
	for _, a := range actions {
		switch a := a.(type) {
		case slotmanager.Allocate:
			j, s := rm.jobs[a.Job], rm.tms[a.TaskManager]
			if j == nil || s == nil {
				continue
			}
			rm.sendTo(s, &clusterpb.MasterMessage{Msg: &clusterpb.MasterMessage_RequestSlot{RequestSlot: &clusterpb.RequestSlot{
				AllocationId: a.ID, SlotIndex: int32(a.Slot), JobId: a.Job, JobMasterId: j.jobMasterID()}}})
		case slotmanager.Freed:
			if s := rm.tms[a.TaskManager]; s != nil {
				rm.sendTo(s, &clusterpb.MasterMessage{Msg: &clusterpb.MasterMessage_FreeSlot{FreeSlot: &clusterpb.FreeSlot{
					AllocationId: a.ID, JobId: a.Job}}})
			}
		case slotmanager.Lost:
			if j := rm.jobs[a.Job]; j != nil {
				j.slotLost(a.Allocation, a.Reason)
			}
		case slotmanager.RequestTimeout:
			if j := rm.jobs[a.Job]; j != nil {
				j.slotTimeout(a.Err)
			}
		}
	}
}

// declare sets a job's slot requirement (on the ResourceManager's goroutine).
func (rm *resourceManager) declare(job string, sink jobSink, reqs []slotmanager.Requirement) {
	rm.jobs[job] = sink
	actions, err := rm.slots.Declare(job, reqs, time.Now())
	if err != nil {
		sink.slotTimeout(err)
		return
	}
	rm.apply(actions)
}

// free returns one of a job's slots.
func (rm *resourceManager) free(allocation string) {
	rm.apply(rm.slots.Free(allocation, time.Now()))
}

// removeJob frees all of a job's slots and forgets it.
func (rm *resourceManager) removeJob(job string) {
	rm.apply(rm.slots.RemoveJob(job, time.Now()))
	delete(rm.jobs, job)
}

// sendToTM sends m to a registered TaskManager; false if it is not.
func (rm *resourceManager) sendToTM(tm string, m *clusterpb.MasterMessage) bool {
	s := rm.tms[tm]
	if s == nil {
		return false
	}
	rm.sendTo(s, m)
	return true
}

// dataHost returns the host a TaskManager's workers serve data on.
func (rm *resourceManager) taskManagerInfo() []rest.TaskManagerInfo {
	view := rm.slots.View()
	byID := map[string]slotmanager.TaskManagerView{}
	for _, t := range view.TaskManagers {
		byID[t.ID] = t
	}
	var out []rest.TaskManagerInfo
	for id, s := range rm.tms {
		out = append(out, tmInfo(s, byID[id]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// tmInfo is a TaskManager as the REST API shows it.
func tmInfo(s *tmSession, v slotmanager.TaskManagerView) rest.TaskManagerInfo {
	r := s.reg
	info := rest.TaskManagerInfo{ID: r.ResourceId, Path: s.peer, TimeSinceLastHeartbeat: s.lastBeat.UnixMilli(),
		SlotsNumber: len(r.Slots), TotalResource: profileInfo(profileFromPB(r.Total)),
		Hardware: rest.HardwareDescription{CPUCores: int(r.HardwareCpuCores), PhysicalMemory: r.HardwareMemory},
		Version:  r.Version, PID: int(r.Pid), Host: r.Hostname}
	free := profileFromPB(r.Total)
	slotsOf := map[string]int{}
	for _, sl := range v.Slots {
		if sl.Job == "" {
			info.FreeSlots++
			continue
		}
		free = free.Sub(sl.Profile)
		slotsOf[sl.Job]++
		info.AllocatedSlots = append(info.AllocatedSlots, rest.SlotInfo{JobID: sl.Job, Resource: profileInfo(sl.Profile)})
	}
	info.FreeResource = profileInfo(free)
	jobs := make([]string, 0, len(slotsOf))
	for j := range slotsOf {
		jobs = append(jobs, j)
	}
	sort.Strings(jobs)
	for _, j := range jobs {
		info.Workers = append(info.Workers, rest.WorkerInfo{JobID: j, Slots: slotsOf[j]})
	}
	return info
}

func profileInfo(p resource.Profile) rest.ResourceProfileInfo {
	ext := map[string]float64{}
	for k, v := range p.Extended {
		ext[k] = float64(v)
	}
	return rest.ResourceProfileInfo{CPUCores: float64(p.CPU) / 1000, TaskHeapMemory: p.TaskMemory >> 20,
		ManagedMemory: p.ManagedMemory >> 20, NetworkMemory: p.NetworkMemory >> 20, ExtendedResources: ext}
}

package taskmanager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/weirstream/weir/internal/pb/clusterpb"
)

// session is one Connect stream with the master. The agent writes to out;
// a sender goroutine sends, and a receiver goroutine enqueues what
// arrives, until cancel.
type session struct {
	id     int
	cancel context.CancelFunc
	out    chan *pb.TaskManagerMessage
}

// outQueue bounds the messages waiting to be sent; a master that lets it
// fill is not reading and is treated as lost.
const outQueue = 1024

// connect starts a session and registers on it; the master's answer (or
// the stream's failure) arrives in the mailbox.
func (a *agent) connect() {
	a.sessions++
	ctx, cancel := context.WithCancel(a.life)
	s := &session{id: a.sessions, cancel: cancel, out: make(chan *pb.TaskManagerMessage, outQueue)}
	a.session = s
	s.out <- &pb.TaskManagerMessage{Msg: &pb.TaskManagerMessage_Register{Register: a.registration()}}
	a.armDeadline(a.o.HeartbeatTimeout)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runSession(ctx, s)
	}()
}

func (a *agent) registration() *pb.RegisterTaskManager {
	host, _ := os.Hostname()
	slots := make([]*pb.ResourceProfile, len(a.slots.profiles))
	for i, p := range a.slots.profiles {
		slots[i] = toProto(p)
	}
	return &pb.RegisterTaskManager{
		ResourceId:       a.o.ResourceID,
		Version:          a.o.Version,
		Hostname:         host,
		Pid:              int32(os.Getpid()),
		DataHost:         a.o.DataHost,
		Total:            toProto(a.o.Total),
		Slots:            slots,
		HardwareCpuCores: hardwareCores(),
		HardwareMemory:   hardwareMemory(),
		Goos:             runtime.GOOS,
		Goarch:           runtime.GOARCH,
	}
}

// runSession opens the stream, sends what the agent queues and enqueues
// what the master sends, until the stream fails or ctx ends.
func (a *agent) runSession(ctx context.Context, s *session) {
	stream, err := a.client.Connect(ctx)
	if err != nil {
		a.enqueue(sessionEnded{s.id, err})
		return
	}
	var sender sync.WaitGroup
	sender.Add(1)
	go func() {
		defer sender.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-s.out:
				if stream.Send(m) != nil {
					// The stream is broken; Recv reports why.
					return
				}
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			a.enqueue(sessionEnded{s.id, err})
			break
		}
		a.enqueue(received{s.id, m})
	}
	// The agent cancels ctx when it handles sessionEnded (or when it ends).
	<-ctx.Done()
	sender.Wait()
}

// Kinds of connection problem: the agent logs a change of kind, not each
// retry (whose details, such as local ports, differ every time).
const (
	unreachable   = "unreachable"
	notAMaster    = "not a master"
	noAnswer      = "no answer"
	badFirstReply = "bad reply"
)

// describeConnectError says why a registration attempt failed, naming the
// address and what to check, and classifies it.
func describeConnectError(addr string, err error) (kind, text string) {
	if notWeirMaster(err) {
		what := describeStreamError(err)
		if strings.Contains(what, "HTTP/1.1") {
			what = "it answers in HTTP/1.1, not gRPC"
		}
		return notAMaster, fmt.Sprintf("%s is not a Weir master (%s); --jobmanager must name the master's RPC port "+
			"(jobmanager.rpc.port, 6123 by default), not its REST port or another service", addr, what)
	}
	return unreachable, fmt.Sprintf("cannot reach the master at %s: %s; is `weir cluster start` running there?", addr, describeStreamError(err))
}

// notWeirMaster reports whether err says the peer answered but is not a
// gRPC server with the Master service: an HTTP/1 server, a gRPC server of
// something else, or another protocol altogether.
func notWeirMaster(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unimplemented:
		return true
	case codes.Unavailable, codes.Internal, codes.Unknown:
		msg := strings.ToLower(st.Message())
		for _, sign := range []string{"http2", "http/1.1", "frame", "http status", "content-type", "malformed header", "transport: received unexpected"} {
			if strings.Contains(msg, sign) {
				return true
			}
		}
	}
	return false
}

// describeStreamError shortens gRPC's errors for the log.
func describeStreamError(err error) string {
	if errors.Is(err, io.EOF) {
		return "it closed the connection"
	}
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := st.Message()
	if st.Code() == codes.Unavailable && msg == "error reading from server: EOF" {
		return "it closed the connection"
	}
	msg = strings.TrimPrefix(msg, "connection error: desc = ")
	msg = strings.Trim(msg, `"`)
	msg = strings.TrimPrefix(msg, "transport: Error while dialing: ")
	if st.Code() == codes.Unimplemented {
		return "it does not serve weir.cluster.v1.Master"
	}
	return msg
}

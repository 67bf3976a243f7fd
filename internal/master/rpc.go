package master

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/artifact"
	"github.com/weirstream/weir/internal/pb/clusterpb"
)

// rpcServer is the master's gRPC endpoint: TaskManager sessions (the
// ResourceManager), worker sessions (the jobs' JobMasters) and artifact
// downloads (the Dispatcher).
type rpcServer struct {
	clusterpb.UnimplementedMasterServer
	m *Master
}

func peerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown peer"
}

// Connect is a TaskManager's session.
func (r *rpcServer) Connect(stream clusterpb.Master_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	if reg == nil {
		return status.Error(codes.InvalidArgument, "the first message of a TaskManager session must register it")
	}
	if reg.ResourceId == "" {
		return status.Error(codes.InvalidArgument, "a TaskManager must register with a resource id")
	}
	rm := r.m.rm
	ctx, cancel := context.WithCancelCause(stream.Context())
	s := &tmSession{reg: reg, peer: peerOf(stream.Context()), send: make(chan *clusterpb.MasterMessage, 4096), ctx: ctx, cancel: cancel}
	errc := make(chan error, 1)
	rm.do(func() { errc <- rm.register(s, time.Now()) })
	var regErr error
	select {
	case regErr = <-errc:
	case <-rm.done:
		regErr = fmt.Errorf("the master is shutting down")
	}
	if regErr != nil {
		r.m.log("refused TaskManager %s from %s: %v", reg.ResourceId, s.peer, regErr)
		_ = stream.Send(&clusterpb.MasterMessage{LeaderId: rm.leaderID, Msg: &clusterpb.MasterMessage_Refused{Refused: &clusterpb.Refused{Reason: regErr.Error()}}})
		return nil
	}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				reason := "connection closed"
				if err != io.EOF && status.Code(err) != codes.Canceled {
					reason = "connection lost: " + status.Convert(err).Message()
				}
				cancel(fmt.Errorf("%s", reason))
				rm.do(func() { rm.lost(s, reason, time.Now()) })
				return
			}
			rm.do(func() { rm.onMessage(s, m, time.Now()) })
		}
	}()
	for {
		select {
		case m := <-s.send:
			if err := stream.Send(m); err != nil {
				cancel(err)
				rm.do(func() { rm.lost(s, "connection lost: "+err.Error(), time.Now()) })
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// Attach is a worker's session with its job's JobMaster.
func (r *rpcServer) Attach(stream clusterpb.Master_AttachServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message of a worker session must be its hello")
	}
	j := r.m.job(hello.JobId)
	if j == nil {
		_ = stream.Send(&clusterpb.JobMasterMessage{Msg: &clusterpb.JobMasterMessage_Refused{Refused: &clusterpb.Refused{
			Reason: fmt.Sprintf("job %s is not running on this master", hello.JobId)}}})
		return nil
	}
	return j.serveWorker(stream, hello, peerOf(stream.Context()))
}

// FetchArtifact streams a job binary to a TaskManager.
func (r *rpcServer) FetchArtifact(req *clusterpb.FetchArtifactRequest, stream clusterpb.Master_FetchArtifactServer) error {
	if !artifact.ValidDigest(req.Digest) {
		return status.Errorf(codes.InvalidArgument, "%q is not an artifact digest (64 hex characters)", req.Digest)
	}
	f, _, err := r.m.store.Open(req.Digest)
	if err != nil {
		return status.Error(codes.NotFound, err.Error())
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&clusterpb.ArtifactChunk{Data: buf[:n]}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "reading artifact %s: %v", req.Digest, err)
		}
	}
}

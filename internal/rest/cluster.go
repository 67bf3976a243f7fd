package rest

// The session cluster's side of the API: job submission, the artifact
// store and the TaskManagers, served when Options.Cluster is set (the
// Dispatcher's server). An embedded cluster's API has none of them.
//
//	weir run --jobmanager ──HEAD /artifacts/:digest──▶ Cluster.HasArtifact
//	                     ──POST /jobs (multipart)───▶ Cluster.Submit(req, artifact stream)
//	                        part "request":  SubmitRequest (JSON)
//	                        part "artifact": the job binary, only if the
//	                                         Dispatcher lacks it; streamed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/artifact"
	pb "github.com/weirstream/weir/internal/pb/jobgraphpb"
)

// Cluster is what the REST API needs of a session cluster's Dispatcher.
// Its methods are called from HTTP handlers, concurrently.
type Cluster interface {
	// Submit starts a job from req and returns its id (32 hex digits).
	// artifact streams the job binary; it is nil for a built-in job or when
	// the Dispatcher already has req.ArtifactDigest (HasArtifact). Submit
	// must check the artifact's bytes against req.ArtifactDigest. It
	// returns a *SubmitError for a request the user must fix.
	Submit(ctx context.Context, req SubmitRequest, artifact io.Reader) (jobID string, err error)
	// HasArtifact reports whether the Dispatcher stores the artifact with
	// this digest.
	HasArtifact(digest string) bool
	// TaskManagers returns the registered TaskManagers, AllocatedSlots and
	// Workers included.
	TaskManagers() []TaskManagerInfo
}

// SubmitRequest is the "request" part of POST /jobs.
type SubmitRequest struct {
	JobName string `json:"jobName"`
	// Builtin names a job compiled into weir, e.g. "builtin:nexmark"; a
	// submission has either Builtin or ArtifactDigest.
	Builtin string `json:"builtin,omitempty"`
	// ArtifactDigest is the hex SHA-256 of the job binary; ArtifactName its
	// file name, for messages.
	ArtifactDigest string `json:"artifactDigest,omitempty"`
	ArtifactName   string `json:"artifactName,omitempty"`
	// Args are the job's arguments, passed to main() on every run of it.
	Args        []string          `json:"programArgsList"`
	Parallelism int               `json:"parallelism,omitempty"`
	Config      map[string]string `json:"config,omitempty"`
	// JobGraph is the job's plan, a jobgraphpb.JobGraph in protobuf's
	// binary form, built client-side by running main() in plan mode.
	JobGraph []byte `json:"jobGraph"`
	// SavepointPath is a savepoint or retained checkpoint to start from,
	// as a path on the master; AllowNonRestoredState skips its state of
	// operators the job no longer has.
	SavepointPath         string `json:"savepointPath,omitempty"`
	AllowNonRestoredState bool   `json:"allowNonRestoredState,omitempty"`
}

// SubmitError is a submission refused for a reason the user must fix; the
// API answers it with Status (400 when zero) and Msg.
type SubmitError struct {
	Status int
	Msg    string
}

func (e *SubmitError) Error() string { return e.Msg }

// Sizes of the parts of POST /jobs. The request part holds the JobGraph
// (base64 in JSON); real ones are kilobytes.
const maxSubmitRequest = 64 << 20

// notSession answers the session-only routes on an embedded API.
const notSession = "this is a job's embedded REST API; submit to a session cluster (weir cluster start)"

// submit is POST /jobs.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	// An answer sent while the client still uploads may reach it as a
	// reset connection instead: read what it sends first.
	refuse := func(w http.ResponseWriter, code int, format string, args ...any) {
		drain(r)
		writeError(w, code, format, args...)
	}
	if s.cluster == nil {
		w.Header().Set("Allow", "GET")
		refuse(w, http.StatusMethodNotAllowed, "%s", notSession)
		return
	}
	const usage = `POST /jobs takes multipart/form-data: a "request" part (JSON) and then, optionally, an "artifact" part (the job binary); weir run --jobmanager sends it`
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "multipart/form-data" {
		refuse(w, http.StatusBadRequest, "Content-Type %q: %s", r.Header.Get("Content-Type"), usage)
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		refuse(w, http.StatusBadRequest, "%v: %s", err, usage)
		return
	}
	part, err := mr.NextPart()
	switch {
	case err == io.EOF:
		refuse(w, http.StatusBadRequest, "no parts: %s", usage)
		return
	case err != nil:
		refuse(w, http.StatusBadRequest, "reading the upload: %v", err)
		return
	case part.FormName() != "request":
		refuse(w, http.StatusBadRequest, "the first part is %q, not \"request\": %s", part.FormName(), usage)
		return
	}
	req, err := decodeSubmitRequest(part)
	if err != nil {
		refuse(w, http.StatusBadRequest, "%v", err)
		return
	}
	var upload *countingReader
	switch part, err = mr.NextPart(); {
	case err == io.EOF:
	case err != nil:
		refuse(w, http.StatusBadRequest, "reading the upload after the request part: %v", err)
		return
	case part.FormName() != "artifact":
		refuse(w, http.StatusBadRequest, "unexpected part %q after \"request\": %s", part.FormName(), usage)
		return
	case req.Builtin != "":
		refuse(w, http.StatusBadRequest, "job %s is built into weir: send no artifact part", req.Builtin)
		return
	default:
		upload = &countingReader{r: part}
	}
	if req.Builtin == "" && upload == nil && !s.cluster.HasArtifact(req.ArtifactDigest) {
		refuse(w, http.StatusBadRequest, "the Dispatcher has no artifact %s (%s): send the job binary in an \"artifact\" part",
			req.ArtifactDigest, nameOr(req.ArtifactName, "the job binary"))
		return
	}
	var body io.Reader
	if upload != nil {
		body = upload
	}
	id, err := s.cluster.Submit(r.Context(), req, body)
	if err != nil {
		drain(r)
		submitFailed(w, req, upload, err)
		return
	}
	// Submit need not read an artifact it turned out to have.
	drain(r)
	if id = strings.ToLower(id); !isHexID(id) {
		writeError(w, http.StatusInternalServerError, "the Dispatcher gave job %q the id %q, which is not 32 hex digits", req.JobName, id)
		return
	}
	writeJSON(w, http.StatusAccepted, SubmitResponse{JobID: id, JobURL: "/jobs/" + id})
}

// submitFailed answers a Submit error with the status it deserves.
func submitFailed(w http.ResponseWriter, req SubmitRequest, upload *countingReader, err error) {
	var se *SubmitError
	var ae *artifact.Error
	switch {
	case upload != nil && upload.err != nil && upload.err != io.EOF:
		// The upload broke off: the client's doing, whatever Submit made
		// of it.
		writeError(w, http.StatusBadRequest, "reading the artifact upload after %d bytes: %v", upload.n, upload.err)
	case errors.As(err, &se):
		code := se.Status
		if code == 0 {
			code = http.StatusBadRequest
		}
		writeError(w, code, "%s", se.Msg)
	case errors.As(err, &ae):
		writeError(w, http.StatusBadRequest, "%v", err)
	default:
		writeError(w, http.StatusInternalServerError, "submitting job %q: %v", req.JobName, err)
	}
}

// maxDrain bounds how much of a refused upload the server reads before
// answering; larger ones get their connection closed.
const maxDrain = 1 << 30

// drain reads the rest of a request's body.
func drain(r *http.Request) {
	io.CopyN(io.Discard, r.Body, maxDrain)
}

// decodeSubmitRequest reads and checks the request part.
func decodeSubmitRequest(part io.Reader) (SubmitRequest, error) {
	var req SubmitRequest
	b, err := io.ReadAll(io.LimitReader(part, maxSubmitRequest+1))
	switch {
	case err != nil:
		return req, fmt.Errorf("reading the request part: %v", err)
	case len(b) > maxSubmitRequest:
		return req, fmt.Errorf("the request part is larger than %d MiB", maxSubmitRequest>>20)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("the request part did not match the expected format: %v", err)
	}
	req.ArtifactDigest = strings.ToLower(req.ArtifactDigest)
	switch {
	case req.Builtin != "" && req.ArtifactDigest != "":
		return req, fmt.Errorf("the request names both a built-in job (%s) and an artifact (%s); give one", req.Builtin, req.ArtifactDigest)
	case req.Builtin != "" && !strings.HasPrefix(req.Builtin, "builtin:"):
		return req, fmt.Errorf("builtin %q: a built-in job is named builtin:NAME", req.Builtin)
	case req.Builtin == "" && req.ArtifactDigest == "":
		return req, errors.New("the request names no job: give builtin (builtin:NAME) or artifactDigest (the hex SHA-256 of the job binary)")
	case req.Builtin == "" && !artifact.ValidDigest(req.ArtifactDigest):
		return req, fmt.Errorf("artifactDigest %q is not a digest: give the hex SHA-256 of the job binary (64 hex digits)", req.ArtifactDigest)
	case req.Parallelism < 0:
		return req, fmt.Errorf("parallelism %d: must be at least 1 (0: the cluster's default)", req.Parallelism)
	case len(req.JobGraph) == 0:
		return req, errors.New("the request has no jobGraph: build it with the job's plan mode (weir run does)")
	}
	if err := proto.Unmarshal(req.JobGraph, &pb.JobGraph{}); err != nil {
		return req, fmt.Errorf("jobGraph is not a JobGraph in protobuf binary form: %v", err)
	}
	return req, nil
}

func nameOr(name, fallback string) string {
	if name == "" {
		return fallback
	}
	return name
}

// countingReader counts what a reader gave and keeps its first error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// artifactInfo is HEAD and GET /artifacts/:digest.
func (s *Server) artifactInfo(w http.ResponseWriter, r *http.Request) {
	digest := strings.ToLower(r.PathValue("digest"))
	switch {
	case s.cluster == nil:
		writeError(w, http.StatusNotFound, "%s", notSession)
	case !artifact.ValidDigest(digest):
		writeError(w, http.StatusBadRequest, "%q is not an artifact digest: give the hex SHA-256 of the job binary (64 hex digits)", r.PathValue("digest"))
	case !s.cluster.HasArtifact(digest):
		writeError(w, http.StatusNotFound, "Artifact %s not found", digest)
	default:
		writeJSON(w, http.StatusOK, ArtifactInfo{Digest: digest})
	}
}

// taskManagers is GET /taskmanagers: Flink's list, without allocated
// slots.
func (s *Server) taskManagers(w http.ResponseWriter, r *http.Request) {
	body := TaskManagersInfo{TaskManagers: []TaskManagerInfo{}}
	if s.cluster != nil {
		for _, tm := range s.cluster.TaskManagers() {
			tm.AllocatedSlots = nil
			body.TaskManagers = append(body.TaskManagers, normalizeTM(tm))
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// taskManager is GET /taskmanagers/:taskmanagerid.
func (s *Server) taskManager(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("tmid")
	if s.cluster == nil {
		writeError(w, http.StatusNotFound, "TaskManager %s not found: %s", id, notSession)
		return
	}
	for _, tm := range s.cluster.TaskManagers() {
		if tm.ID == id {
			tm = normalizeTM(tm)
			slots := tm.AllocatedSlots
			if slots == nil {
				slots = []SlotInfo{}
			}
			tm.AllocatedSlots = nil
			writeJSON(w, http.StatusOK, TaskManagerDetails{TaskManagerInfo: tm, AllocatedSlots: slots})
			return
		}
	}
	writeError(w, http.StatusNotFound, "TaskManager %s not found; GET /taskmanagers lists them", id)
}

// normalizeTM fills what Flink's clients expect never to be null.
func normalizeTM(tm TaskManagerInfo) TaskManagerInfo {
	if tm.JMXPort == 0 {
		tm.JMXPort = -1
	}
	if tm.TotalResource.ExtendedResources == nil {
		tm.TotalResource.ExtendedResources = map[string]float64{}
	}
	if tm.FreeResource.ExtendedResources == nil {
		tm.FreeResource.ExtendedResources = map[string]float64{}
	}
	// The slices are the Cluster's: copy before filling them in.
	tm.AllocatedSlots = slices.Clone(tm.AllocatedSlots)
	for i, sl := range tm.AllocatedSlots {
		if sl.Resource.ExtendedResources == nil {
			tm.AllocatedSlots[i].Resource.ExtendedResources = map[string]float64{}
		}
	}
	return tm
}

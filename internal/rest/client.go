package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a Weir REST API, or to Flink's, whose shapes it shares.
// Its errors say what went wrong in a user's terms: nothing listening, a
// server that is not a Weir or Flink API, a refused request, a malformed
// answer.
type Client struct {
	// Addr is the address as the user gave it, for messages.
	Addr string
	base string // scheme://host:port[/prefix], no trailing slash
	http *http.Client
	// upload sends job submissions, whose binaries may take longer than
	// requestTimeout to upload; the caller's context bounds them.
	upload *http.Client
}

// requestTimeout bounds one request; savepoints are polled, never waited
// for in one request.
const requestTimeout = 15 * time.Second

// NewClient returns a client of the API at addr: HOST:PORT, a bare PORT
// (on localhost), or an http(s):// URL, possibly with a path prefix (a
// proxy's).
func NewClient(addr string) (*Client, error) {
	raw := strings.TrimSpace(addr)
	if raw == "" {
		return nil, errors.New("no REST address: give HOST:PORT, e.g. localhost:8081")
	}
	if !strings.Contains(raw, "://") {
		if isDigits(raw) {
			raw = "localhost:" + raw
		}
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("REST address %q: %v; give HOST:PORT or http://HOST:PORT", addr, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("REST address %q: scheme %q is not http or https", addr, u.Scheme)
	case u.Hostname() == "":
		return nil, fmt.Errorf("REST address %q has no host; give HOST:PORT, e.g. localhost:8081", addr)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("REST address %q: drop the query or fragment; give HOST:PORT or http://HOST:PORT", addr)
	}
	return &Client{Addr: strings.TrimSpace(addr), base: strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"),
		http: &http.Client{Timeout: requestTimeout}, upload: &http.Client{}}, nil
}

// BaseURL is the API's URL, e.g. http://localhost:8081.
func (c *Client) BaseURL() string { return c.base }

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// UnreachableError means nothing answered at the address.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("no Weir REST API at %s: is the job running? give --jobmanager with the address its job prints (\"REST API at …\"), "+
		"or a session cluster's (weir cluster start) (%v)", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

func (e *NotAPIError) Unwrap() error { return e.transport }

// NotAPIError means an HTTP server answered that is not a Weir or Flink
// REST API.
type NotAPIError struct {
	Addr, Request, Answer string
	// transport is set when the answer was not HTTP at all (or the
	// connection broke).
	transport error
}

func (e *NotAPIError) Error() string {
	return fmt.Sprintf("%s is not a Weir or Flink REST API: %s answered %s; give --jobmanager with the address the job prints (\"REST API at …\")",
		e.Addr, e.Request, e.Answer)
}

// APIError is a request the API refused, with its {"errors":[…]}.
type APIError struct {
	Addr, Request string
	StatusCode    int
	Errors        []string
}

func (e *APIError) Error() string {
	msg := strings.Join(e.Errors, "; ")
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("%s %s: %s", e.Addr, e.Request, msg)
}

// MalformedError is an answer that is not what the API promises.
type MalformedError struct {
	Addr, Request, Problem string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("malformed answer from %s to %s: %s", e.Addr, e.Request, e.Problem)
}

// IsNotFound reports whether err is the API's 404: no such job or
// operation.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// do sends one request and decodes a 2xx answer's JSON into out (if not
// nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	request := method + " " + path
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	_, err = c.send(c.http, req, request, out)
	return err
}

// send sends req with hc and decodes a 2xx answer's JSON into out (if not
// nil), turning every other outcome into one of the client's errors;
// request names it in them ("GET /jobs").
func (c *Client) send(hc *http.Client, req *http.Request, request string, out any) (status int, err error) {
	ctx := req.Context()
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var op *net.OpError
		var ne net.Error
		switch {
		case errors.As(err, &op) && op.Op == "dial":
			return 0, &UnreachableError{Addr: c.Addr, Err: op}
		case errors.As(err, &ne) && ne.Timeout():
			return 0, fmt.Errorf("%s %s: no answer within %s: %w", c.Addr, request, hc.Timeout, err)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, &NotAPIError{Addr: c.Addr, Request: request, Answer: fmt.Sprintf("with something other than HTTP (%v)", err), transport: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: reading the answer: %w", c.Addr, request, err)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	isJSON := ct == "application/json" || json.Valid(b)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var er struct {
			Errors *[]string `json:"errors"`
		}
		if isJSON && json.Unmarshal(b, &er) == nil && er.Errors != nil {
			return resp.StatusCode, &APIError{Addr: c.Addr, Request: request, StatusCode: resp.StatusCode, Errors: *er.Errors}
		}
		return resp.StatusCode, &NotAPIError{Addr: c.Addr, Request: request, Answer: describe(resp, ct, b)}
	}
	if out == nil {
		return resp.StatusCode, nil
	}
	if !isJSON {
		return resp.StatusCode, &NotAPIError{Addr: c.Addr, Request: request, Answer: describe(resp, ct, b)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, &MalformedError{Addr: c.Addr, Request: request, Problem: fmt.Sprintf("%v in %s", err, excerpt(b))}
	}
	return resp.StatusCode, nil
}

// describe summarises an answer that is not the API's.
func describe(resp *http.Response, ct string, b []byte) string {
	if ct == "" {
		ct = "no content type"
	}
	s := fmt.Sprintf("%s with %s", resp.Status, ct)
	if len(bytes.TrimSpace(b)) > 0 {
		s += " " + excerpt(b)
	}
	return s
}

func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// Overview returns GET /overview.
func (c *Client) Overview(ctx context.Context) (*ClusterOverview, error) {
	var o ClusterOverview
	if err := c.do(ctx, "GET", "/overview", nil, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

// Jobs returns the jobs of GET /jobs/overview.
func (c *Client) Jobs(ctx context.Context) ([]JobOverview, error) {
	var body struct {
		Jobs *[]JobOverview `json:"jobs"`
	}
	const path = "/jobs/overview"
	if err := c.do(ctx, "GET", path, nil, &body); err != nil {
		return nil, err
	}
	if body.Jobs == nil {
		return nil, &NotAPIError{Addr: c.Addr, Request: "GET " + path, Answer: `JSON without a "jobs" list`}
	}
	for _, j := range *body.Jobs {
		if j.ID == "" || j.State == "" {
			return nil, &MalformedError{Addr: c.Addr, Request: "GET " + path, Problem: fmt.Sprintf("a job without jid or state: %+v", j)}
		}
	}
	return *body.Jobs, nil
}

// Job returns GET /jobs/:jobid.
func (c *Client) Job(ctx context.Context, jobID string) (*JobDetails, error) {
	var d JobDetails
	path := "/jobs/" + url.PathEscape(jobID)
	if err := c.do(ctx, "GET", path, nil, &d); err != nil {
		return nil, err
	}
	if d.ID == "" || d.State == "" {
		return nil, &MalformedError{Addr: c.Addr, Request: "GET " + path, Problem: "no jid or state"}
	}
	return &d, nil
}

// Cancel asks for the job to be canceled (PATCH /jobs/:jobid?mode=cancel).
func (c *Client) Cancel(ctx context.Context, jobID string) error {
	return c.do(ctx, "PATCH", "/jobs/"+url.PathEscape(jobID)+"?mode=cancel", nil, nil)
}

// TriggerSavepoint starts a savepoint into dir (empty: the job's default
// directory) and returns its request id.
func (c *Client) TriggerSavepoint(ctx context.Context, jobID, dir string, cancelJob bool) (string, error) {
	return c.trigger(ctx, "/jobs/"+url.PathEscape(jobID)+"/savepoints",
		SavepointTriggerRequest{TargetDirectory: dir, CancelJob: cancelJob})
}

// StopWithSavepoint starts a stop-with-savepoint and returns its request
// id; drain first ends event time, firing all timers and windows.
func (c *Client) StopWithSavepoint(ctx context.Context, jobID, dir string, drain bool) (string, error) {
	return c.trigger(ctx, "/jobs/"+url.PathEscape(jobID)+"/stop", StopRequest{TargetDirectory: dir, Drain: drain})
}

func (c *Client) trigger(ctx context.Context, path string, body any) (string, error) {
	var tr TriggerResponse
	if err := c.do(ctx, "POST", path, body, &tr); err != nil {
		return "", err
	}
	if tr.RequestID == "" {
		return "", &MalformedError{Addr: c.Addr, Request: "POST " + path, Problem: "no request-id"}
	}
	return tr.RequestID, nil
}

// SavepointStatus returns GET /jobs/:jobid/savepoints/:triggerid.
func (c *Client) SavepointStatus(ctx context.Context, jobID, triggerID string) (*AsynchronousOperationResult, error) {
	var r AsynchronousOperationResult
	path := "/jobs/" + url.PathEscape(jobID) + "/savepoints/" + url.PathEscape(triggerID)
	if err := c.do(ctx, "GET", path, nil, &r); err != nil {
		return nil, err
	}
	switch {
	case r.Status.ID == InProgress:
	case r.Status.ID != Completed:
		return nil, &MalformedError{Addr: c.Addr, Request: "GET " + path, Problem: fmt.Sprintf("unknown status %q", r.Status.ID)}
	case r.Operation == nil || (r.Operation.Location == "" && r.Operation.FailureCause == nil):
		return nil, &MalformedError{Addr: c.Addr, Request: "GET " + path, Problem: "a completed operation with neither location nor failure-cause"}
	}
	return &r, nil
}

// SavepointError is a savepoint the job master could not take.
type SavepointError struct {
	JobID string
	Cause FailureCause
}

func (e *SavepointError) Error() string {
	msg := strings.TrimSpace(e.Cause.StackTrace)
	// Flink's stack traces start with "Class: message"; the frames below
	// are of no use to the user.
	if first, _, ok := strings.Cut(msg, "\n"); ok {
		msg = first
	}
	if msg == "" {
		msg = e.Cause.Class
	}
	return msg
}

// AwaitSavepoint polls a savepoint operation every poll until it completes
// and returns its location. progress, if set, is called after each poll
// that found it still in progress.
func (c *Client) AwaitSavepoint(ctx context.Context, jobID, triggerID string, poll time.Duration, progress func()) (string, error) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		r, err := c.SavepointStatus(ctx, jobID, triggerID)
		var ue *UnreachableError
		var na *NotAPIError
		switch {
		case errors.As(err, &ue) || errors.As(err, &na) && na.transport != nil:
			return "", fmt.Errorf("the REST API at %s went away before savepoint %s of job %s completed: "+
				"the job has probably ended; see its output (%v)", c.Addr, triggerID, jobID, errors.Unwrap(err))
		case err != nil:
			return "", err
		case r.Status.ID == Completed && r.Operation.FailureCause != nil:
			return "", &SavepointError{JobID: jobID, Cause: *r.Operation.FailureCause}
		case r.Status.ID == Completed:
			return r.Operation.Location, nil
		}
		if progress != nil {
			progress()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

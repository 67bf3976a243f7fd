package rest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Submit submits a job to a session cluster (POST /jobs) and returns its
// id. With artifactPath set the job is that binary: Submit sets
// req.ArtifactDigest (and ArtifactName, if empty), asks the Dispatcher
// whether it has the binary already (HEAD /artifacts/:digest) and uploads
// it only if not, streaming it from the file. Without artifactPath req
// names a built-in job.
func (c *Client) Submit(ctx context.Context, req SubmitRequest, artifactPath string) (jobID string, err error) {
	var upload *os.File
	if artifactPath != "" {
		f, err := os.Open(artifactPath)
		if err != nil {
			return "", fmt.Errorf("job binary: %w", err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return "", fmt.Errorf("reading job binary %s: %w", artifactPath, err)
		}
		req.ArtifactDigest = hex.EncodeToString(h.Sum(nil))
		if req.ArtifactName == "" {
			req.ArtifactName = filepath.Base(artifactPath)
		}
		has, err := c.HasArtifact(ctx, req.ArtifactDigest)
		if err != nil {
			return "", err
		}
		if !has {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return "", fmt.Errorf("reading job binary %s: %w", artifactPath, err)
			}
			upload = f
		}
	}
	meta, err := json.Marshal(req)
	if err != nil {
		return "", err
	}

	// The body is written as it is sent, so a binary of any size is never
	// held in memory.
	const path = "/jobs"
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	hreq, err := http.NewRequestWithContext(ctx, "POST", c.base+path, pr)
	if err != nil {
		return "", err
	}
	hreq.Header.Set("Content-Type", mw.FormDataContentType())
	hreq.Header.Set("Accept", "application/json")
	written := make(chan error, 1)
	go func() {
		err := writeSubmission(mw, meta, upload, req.ArtifactName)
		pw.CloseWithError(err)
		written <- err
	}()
	var resp SubmitResponse
	_, err = c.send(c.upload, hreq, "POST "+path, &resp)
	// The transport has closed the body by now; this unblocks the writer
	// all the same if it has not.
	pr.CloseWithError(errSubmissionOver)
	werr := <-written
	switch {
	case werr != nil && !errors.Is(werr, errSubmissionOver) && !errors.Is(werr, io.ErrClosedPipe) && ctx.Err() == nil:
		// Reading the binary failed: that, not what the transport made of
		// it, is the cause.
		return "", fmt.Errorf("uploading job binary %s: %w", artifactPath, werr)
	case err != nil:
		return "", err
	}
	resp.JobID = strings.ToLower(resp.JobID)
	if !isHexID(resp.JobID) {
		return "", &MalformedError{Addr: c.Addr, Request: "POST " + path, Problem: fmt.Sprintf("jobid %q is not 32 hex digits", resp.JobID)}
	}
	return resp.JobID, nil
}

// errSubmissionOver stops a submission's body writer once the request is
// over.
var errSubmissionOver = errors.New("submission over")

// writeSubmission writes the multipart body of POST /jobs: the request
// part, then the artifact part if there is one.
func writeSubmission(mw *multipart.Writer, meta []byte, artifact *os.File, name string) error {
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="request"`)
	h.Set("Content-Type", "application/json")
	w, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := w.Write(meta); err != nil {
		return err
	}
	if artifact != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="artifact"; filename=%q`, name))
		h.Set("Content-Type", "application/octet-stream")
		w, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, artifact); err != nil {
			return err
		}
	}
	return mw.Close()
}

// HasArtifact reports whether the Dispatcher has the job binary with this
// digest (HEAD /artifacts/:digest).
func (c *Client) HasArtifact(ctx context.Context, digest string) (bool, error) {
	path := "/artifacts/" + url.PathEscape(digest)
	req, err := http.NewRequestWithContext(ctx, "HEAD", c.base+path, nil)
	if err != nil {
		return false, err
	}
	status, err := c.send(c.http, req, "HEAD "+path, nil)
	switch {
	case status == http.StatusNotFound:
		// A HEAD answer has no body to tell a Weir 404 from another
		// server's; POST /jobs will.
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// TaskManagers returns the session cluster's TaskManagers (GET
// /taskmanagers).
func (c *Client) TaskManagers(ctx context.Context) ([]TaskManagerInfo, error) {
	var body struct {
		TaskManagers *[]TaskManagerInfo `json:"taskmanagers"`
	}
	const path = "/taskmanagers"
	if err := c.do(ctx, "GET", path, nil, &body); err != nil {
		return nil, err
	}
	if body.TaskManagers == nil {
		return nil, &NotAPIError{Addr: c.Addr, Request: "GET " + path, Answer: `JSON without a "taskmanagers" list`}
	}
	for _, tm := range *body.TaskManagers {
		if tm.ID == "" {
			return nil, &MalformedError{Addr: c.Addr, Request: "GET " + path, Problem: fmt.Sprintf("a TaskManager without id: %+v", tm)}
		}
	}
	return *body.TaskManagers, nil
}

// TaskManager returns one TaskManager with its allocated slots (GET
// /taskmanagers/:taskmanagerid).
func (c *Client) TaskManager(ctx context.Context, id string) (*TaskManagerDetails, error) {
	var d TaskManagerDetails
	path := "/taskmanagers/" + url.PathEscape(id)
	if err := c.do(ctx, "GET", path, nil, &d); err != nil {
		return nil, err
	}
	if d.ID == "" {
		return nil, &MalformedError{Addr: c.Addr, Request: "GET " + path, Problem: "no id"}
	}
	return &d, nil
}

// Exceptions returns GET /jobs/:jobid/exceptions.
func (c *Client) Exceptions(ctx context.Context, jobID string) (*JobExceptions, error) {
	var e JobExceptions
	if err := c.do(ctx, "GET", "/jobs/"+url.PathEscape(jobID)+"/exceptions", nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

package rest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/weirstream/weir/internal/config"
	"github.com/weirstream/weir/internal/jobmaster"
)

// Embedded is the REST API of one job's embedded local cluster: a Server
// on the configured address, announced in DiscoveryDir while it runs.
//
//	stream.Execute ── StartEmbedded ── minicluster.Run(OnControl: Register) ── Close
//	                     │ listen rest.bind-address:rest.bind-port (else a free port)
//	                     │ write DiscoveryDir()/<job-id>.json
type Embedded struct {
	server *Server
	// URL is where clients reach the API, e.g. http://127.0.0.1:8081.
	URL string
	// Busy lists the configured ports that were in use when the API fell
	// back to a free port; empty when it got one of them.
	Busy []int

	jobID, name  string
	http         *http.Server
	served       chan error
	announcement string // the discovery file; empty if it could not be written
}

// drainGrace bounds how long Close waits for clients to read the results
// of savepoints that completed as the job ended (stop-with-savepoint).
const drainGrace = 5 * time.Second

// StartEmbedded serves the REST API for job jobID (named name) with the
// rest.* settings of cfg. When every configured port is in use it listens
// on a free one; Describe says which.
func StartEmbedded(cfg *config.Config, jobID, name, version string) (*Embedded, error) {
	ports, err := config.RestBindPorts(cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", config.RestBindPort.Name, err)
	}
	bind := config.RestBindAddressOf(cfg)
	ln, busy, err := listen(bind, ports)
	if err != nil {
		return nil, err
	}
	host := cfg.String(config.RestAddress)
	if host == "" {
		host = bind
	}
	port := ln.Addr().(*net.TCPAddr).Port
	e := &Embedded{
		server: NewServer(Options{Version: version}),
		URL:    "http://" + net.JoinHostPort(host, strconv.Itoa(port)),
		Busy:   busy,
		jobID:  jobID,
		name:   name,
		served: make(chan error, 1),
	}
	e.http = &http.Server{Handler: e.server, ReadHeaderTimeout: 10 * time.Second}
	go func() { e.served <- e.http.Serve(ln) }()
	// Without the file clients still reach the API at the printed URL.
	e.announcement, _ = announce(Announcement{Address: e.URL, PID: os.Getpid(), JobID: jobID, Name: name,
		Started: time.Now().UnixMilli()})
	return e, nil
}

// listen binds the first free port of ports on addr, else a free port.
func listen(addr string, ports []int) (net.Listener, []int, error) {
	var busy []int
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(p)))
		if err == nil {
			return ln, nil, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("REST API: listening on %s: %w; check %s and %s",
				net.JoinHostPort(addr, strconv.Itoa(p)), err, config.RestAddress.Name, config.RestBindAddress.Name)
		}
		busy = append(busy, p)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return nil, nil, fmt.Errorf("REST API: listening on %s: %w", net.JoinHostPort(addr, "0"), err)
	}
	return ln, busy, nil
}

// Describe says where the API is, for the job's progress line.
func (e *Embedded) Describe() string {
	switch {
	case len(e.Busy) == 1:
		return fmt.Sprintf("REST API at %s (port %d is in use)", e.URL, e.Busy[0])
	case len(e.Busy) > 1:
		return fmt.Sprintf("REST API at %s (ports %d-%d are in use)", e.URL, e.Busy[0], e.Busy[len(e.Busy)-1])
	}
	return "REST API at " + e.URL
}

// Register serves the job's Control; it is minicluster.RunOptions.OnControl.
// A nil Embedded (no API) ignores it.
func (e *Embedded) Register(c jobmaster.Control) {
	if e == nil {
		return
	}
	e.server.Register(e.jobID, named{c, e.name})
}

// Close ends the API once clients have read the savepoints that completed
// (at most drainGrace), and removes the announcement. A nil Embedded does
// nothing.
func (e *Embedded) Close() {
	if e == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainGrace)
	defer cancel()
	e.server.Drain(ctx)
	if e.announcement != "" {
		os.Remove(e.announcement)
	}
	e.server.Close()
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	if e.http.Shutdown(sctx) != nil {
		e.http.Close()
	}
	<-e.served
}

// named fills in the job's name when the job master does not know it.
type named struct {
	jobmaster.Control
	name string
}

func (n named) Status() jobmaster.Status {
	s := n.Control.Status()
	if s.Name == "" {
		s.Name = n.name
	}
	return s
}

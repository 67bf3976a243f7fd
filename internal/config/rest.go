package config

import (
	"fmt"
	"strconv"
	"strings"
)

// REST API keys, with Flink's names (RestOptions): rest.address and
// rest.port are where clients connect, rest.bind-address and rest.bind-port
// where the server listens, each falling back to the former. Unlike Flink,
// whose server binds every interface, Weir binds 127.0.0.1 by default: the
// API has no authentication and can stop and cancel jobs.
var (
	RestEnabled = Declare(Key{"rest.enabled", Bool, "true",
		"serve the REST API (weir list, savepoint, stop, cancel) of a job run on the embedded local cluster " +
			"(weir run, or a job binary run directly); quiet launches (tests, weir bench) never serve it"})
	RestAddress = Declare(Key{"rest.address", String, "127.0.0.1",
		"address clients use to reach the REST API, and where it listens unless rest.bind-address is set"})
	RestBindAddress = Declare(Key{"rest.bind-address", String, "",
		"address the REST API listens on; empty means rest.address. 0.0.0.0 listens on every interface " +
			"(the API has no authentication)"})
	RestPort = Declare(Key{"rest.port", Int, "8081",
		"port clients use to reach the REST API, and where it listens unless rest.bind-port is set; " +
			"0 picks a free port"})
	RestBindPort = Declare(Key{"rest.bind-port", String, "",
		"port(s) the REST API tries to listen on, e.g. 8081, \"50100,50101\" or \"50100-50200\"; empty means rest.port. " +
			"When all are in use it listens on a free port and says which"})
)

// RestBindPorts returns the ports the REST server tries in order: those of
// rest.bind-port, else rest.port. 0 means any free port.
func RestBindPorts(c *Config) ([]int, error) {
	if v := strings.TrimSpace(c.String(RestBindPort)); v != "" {
		return ParsePortRanges(v)
	}
	return []int{c.Int(RestPort)}, nil
}

// RestBindAddressOf returns the address the REST server listens on.
func RestBindAddressOf(c *Config) string {
	if v := strings.TrimSpace(c.String(RestBindAddress)); v != "" {
		return v
	}
	return strings.TrimSpace(c.String(RestAddress))
}

// ParsePortRanges parses Flink's port lists: "8081", "50100,50101",
// "50100-50200" or a mix of them.
func ParsePortRanges(s string) ([]int, error) {
	var ports []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		from, err1 := parsePort(lo)
		to, err2 := parsePort(hi)
		switch {
		case part == "":
			return nil, fmt.Errorf("empty port in %q", s)
		case err1 != nil:
			return nil, err1
		case err2 != nil:
			return nil, err2
		case to < from:
			return nil, fmt.Errorf("port range %q runs backwards; write low-high", part)
		}
		for p := from; p <= to; p++ {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (0 to 65535)", strings.TrimSpace(s))
	}
	return n, nil
}

func init() {
	Validate(RestPort, func(v string) error {
		_, err := parsePort(v)
		return err
	})
	Validate(RestBindPort, func(v string) error {
		if strings.TrimSpace(v) == "" {
			return nil
		}
		_, err := ParsePortRanges(v)
		return err
	})
}

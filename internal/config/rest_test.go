package config

import (
	"strings"
	"testing"
)

func restCfg(t *testing.T, kv ...string) *Config {
	t.Helper()
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	c, err := FromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRestConfig(t *testing.T) {
	c := restCfg(t)
	if ports, err := RestBindPorts(c); err != nil || len(ports) != 1 || ports[0] != 8081 {
		t.Errorf("default ports %v, %v; want [8081]", ports, err)
	}
	if a := RestBindAddressOf(c); a != "127.0.0.1" {
		t.Errorf("default bind address %q", a)
	}
	c = restCfg(t, "rest.bind-port", "50100-50102, 50200", "rest.bind-address", "0.0.0.0")
	if ports, err := RestBindPorts(c); err != nil || len(ports) != 4 || ports[2] != 50102 || ports[3] != 50200 {
		t.Errorf("ports %v, %v", ports, err)
	}
	if a := RestBindAddressOf(c); a != "0.0.0.0" {
		t.Errorf("bind address %q", a)
	}
	for _, bad := range [][2]string{{"rest.port", "70000"}, {"rest.port", "-1"}, {"rest.bind-port", "9-1"}, {"rest.bind-port", "a"}, {"rest.bind-port", "1,,2"}} {
		if _, err := FromMap(map[string]string{bad[0]: bad[1]}); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("-D %s=%s: %v, want an error naming the key", bad[0], bad[1], err)
		}
	}
}

// Package config holds Weir's configuration: Flink's key names where the
// meaning is the same, each key declared once with its type, default and
// description, so a misspelt key or a bad value is an error that names the
// key and the fix instead of being silently ignored.
package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a key's value.
type Kind int

const (
	Int Kind = iota
	Bool
	Duration
	String
	Bytes
)

// Key declares one configuration key.
type Key struct {
	Name    string
	Kind    Kind
	Default string
	Doc     string
}

var (
	registry = map[string]Key{}
	// validators hold extra checks of values beyond their kind: ranges
	// and enumerations.
	validators = map[string]func(string) error{}
)

// Validate adds a check of a key's values, run by Set after the kind's;
// its error says what the value must be.
func Validate(k Key, f func(value string) error) {
	validators[k.Name] = f
}

// AtLeast checks that an Int or Duration key is at least min (a whole
// number, or milliseconds for durations); except, if not zero, is also
// accepted (e.g. -1 meaning "off").
func AtLeast(k Key, min int64, except ...int64) {
	Validate(k, func(v string) error {
		var n int64
		switch k.Kind {
		case Int:
			n, _ = parseInt(v)
		case Duration:
			d, _ := ParseDuration(v)
			n = d.Milliseconds()
		}
		for _, e := range except {
			if n == e {
				return nil
			}
		}
		if n < min {
			if k.Kind == Duration {
				return fmt.Errorf("must be at least %v", time.Duration(min)*time.Millisecond)
			}
			return fmt.Errorf("must be at least %d", min)
		}
		return nil
	})
}

// OneOf checks that a String key's value is one of values.
func OneOf(k Key, values ...string) {
	Validate(k, func(v string) error {
		for _, ok := range values {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(values, ", "))
	})
}

// Declare registers a key; packages declare their keys at init.
func Declare(k Key) Key {
	if _, dup := registry[k.Name]; dup {
		panic("config: key declared twice: " + k.Name)
	}
	registry[k.Name] = k
	return k
}

// Keys returns every declared key, sorted by name.
func Keys() []Key {
	out := make([]Key, 0, len(registry))
	for _, k := range registry {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Well-known keys of the streaming core.
var (
	Parallelism = Declare(Key{"parallelism.default", Int, "0",
		"default parallelism of operators; 0 means the number of CPU cores"})
	MaxParallelism = Declare(Key{"pipeline.max-parallelism", Int, "0",
		"max parallelism (number of key groups) of keyed operators; 0 derives it from the parallelism (at least 128)"})
	AutoWatermarkInterval = Declare(Key{"pipeline.auto-watermark-interval", Duration, "200ms",
		"how often sources emit periodic watermarks"})
	OperatorChaining = Declare(Key{"pipeline.operator-chaining.enabled", Bool, "true",
		"chain operators into tasks where the chaining rules allow"})
	BufferTimeout = Declare(Key{"execution.buffer-timeout", Duration, "100ms",
		"longest time a record waits in a partly filled batch while its task is busy; " +
			"0 sends every record at once (lowest latency), -1 sends only full batches (and what is pending when a task goes idle)"})
	BuffersPerChannel = Declare(Key{"taskmanager.network.memory.buffers-per-channel", Int, "4",
		"batches in flight per channel (the channel's credit)"})
	BatchRecords = Declare(Key{"taskmanager.network.batch-records", Int, "512",
		"records per batch on an exchange"})
)

// Config is a set of key/value settings, validated against the declared keys.
type Config struct {
	values map[string]string
}

// New returns an empty configuration.
func New() *Config { return &Config{values: map[string]string{}} }

// FromMap builds a configuration, validating every key and value.
func FromMap(m map[string]string) (*Config, error) {
	c := New()
	for k, v := range m {
		if err := c.Set(k, v); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ParseAssignment parses one -D key=value argument.
func ParseAssignment(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return "", "", fmt.Errorf("-D %q: expected key=value, e.g. -D parallelism.default=4", s)
	}
	return strings.TrimSpace(k), strings.TrimSpace(v), nil
}

// Set validates and stores one setting.
func (c *Config) Set(key, value string) error {
	k, ok := registry[key]
	if !ok {
		return unknownKey(key)
	}
	if err := check(k, value); err != nil {
		return err
	}
	c.values[key] = value
	return nil
}

// Map returns the explicitly set values.
func (c *Config) Map() map[string]string {
	out := make(map[string]string, len(c.values))
	for k, v := range c.values {
		out[k] = v
	}
	return out
}

func (c *Config) raw(k Key) string {
	if v, ok := c.values[k.Name]; ok {
		return v
	}
	return k.Default
}

// Int returns an integer setting.
func (c *Config) Int(k Key) int {
	n, _ := parseInt(c.raw(k))
	return int(n)
}

// Bool returns a boolean setting.
func (c *Config) Bool(k Key) bool {
	b, _ := strconv.ParseBool(c.raw(k))
	return b
}

// Duration returns a duration setting.
func (c *Config) Duration(k Key) time.Duration {
	d, _ := ParseDuration(c.raw(k))
	return d
}

// String returns a string setting.
func (c *Config) String(k Key) string { return c.raw(k) }

// Bytes returns a memory size setting in bytes.
func (c *Config) Bytes(k Key) int64 {
	n, _ := ParseBytes(c.raw(k))
	return n
}

func check(k Key, v string) error {
	var err error
	switch k.Kind {
	case Int:
		_, err = parseInt(v)
	case Bool:
		_, err = strconv.ParseBool(v)
	case Duration:
		_, err = ParseDuration(v)
	case Bytes:
		_, err = ParseBytes(v)
	}
	if err == nil && validators[k.Name] != nil {
		if err = validators[k.Name](v); err != nil && strings.HasPrefix(err.Error(), "config ") {
			return err // already names the key, the value and the fix
		}
	}
	if err != nil {
		return fmt.Errorf("config %s=%q: %v (%s)", k.Name, v, err, k.Doc)
	}
	return nil
}

func init() {
	AtLeast(Parallelism, 1, 0)
	AtLeast(MaxParallelism, 0)
	AtLeast(AutoWatermarkInterval, 1)
	AtLeast(BuffersPerChannel, 1)
	AtLeast(BatchRecords, 1)
	AtLeast(BufferTimeout, 0, -1)
}

func parseInt(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a whole number")
	}
	return n, nil
}

// ParseDuration accepts Go durations ("500ms", "1m30s") and Flink's forms
// ("500 ms", "10 s", "1 min", plain milliseconds).
func ParseDuration(s string) (time.Duration, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		return time.Duration(n) * time.Millisecond, nil
	}
	for _, u := range []struct{ suffix, with string }{{"min", "m"}, {"sec", "s"}, {"hours", "h"}, {"hour", "h"}} {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSuffix(t, u.suffix) + u.with
			break
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("not a duration; write e.g. 500ms, 10s or 1m")
	}
	return d, nil
}

// ParseBytes accepts memory sizes like "512m", "2g", "64kb", "1gib" or plain bytes.
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"tib", 1 << 40}, {"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"tb", 1 << 40}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10},
		{"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a memory size; write e.g. 512m, 2g or 1073741824")
	}
	return n * mult, nil
}

func unknownKey(key string) error {
	best, bestD := "", 1<<30
	for name := range registry {
		if d := distance(key, name); d < bestD {
			best, bestD = name, d
		}
	}
	if best != "" && bestD <= len(key)/3+2 {
		return fmt.Errorf("unknown configuration key %q; did you mean %q? (weir config lists every key)", key, best)
	}
	return fmt.Errorf("unknown configuration key %q (weir config lists every key)", key)
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

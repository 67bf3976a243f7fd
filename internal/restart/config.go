package restart

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/weirstream/weir/internal/config"
)

// FromConfig builds the strategy that restart-strategy.type names, with its
// restart-strategy.<type>.* settings. When the type is not set, Flink's
// default applies: exponential-delay if checkpoints are on
// (checkpointingEnabled), else none. Type names are Flink's, with its
// aliases: none|off|disable, fixed-delay|fixeddelay,
// failure-rate|failurerate, exponential-delay|exponentialdelay. The
// exponential-delay jitter draws from math/rand/v2's global source; build
// the strategy with NewExponentialDelay to inject another.
func FromConfig(c *config.Config, checkpointingEnabled bool) (Strategy, error) {
	typ := strings.ToLower(strings.TrimSpace(c.String(config.RestartStrategyType)))
	if typ == "" {
		typ = "none"
		if checkpointingEnabled {
			typ = "exponential-delay"
		}
	}
	switch typ {
	case "none", "off", "disable":
		return NoRestart(), nil
	case "fixed-delay", "fixeddelay":
		s, err := NewFixedDelay(c.Int(config.FixedDelayAttempts), c.Duration(config.FixedDelayDelay))
		return checked(c, typ, s, err, map[string]config.Key{
			"attempts": config.FixedDelayAttempts,
			"delay":    config.FixedDelayDelay,
		})
	case "failure-rate", "failurerate":
		s, err := NewFailureRate(c.Int(config.FailureRateMaxFailuresPerInterval),
			c.Duration(config.FailureRateInterval), c.Duration(config.FailureRateDelay))
		return checked(c, typ, s, err, map[string]config.Key{
			"max failures per interval": config.FailureRateMaxFailuresPerInterval,
			"failure rate interval":     config.FailureRateInterval,
			"delay":                     config.FailureRateDelay,
		})
	case "exponential-delay", "exponentialdelay":
		mult, err := parseFloat(c, config.ExponentialDelayBackoffMultiplier, "1.5")
		if err != nil {
			return nil, err
		}
		jitter, err := parseFloat(c, config.ExponentialDelayJitterFactor, "0.1")
		if err != nil {
			return nil, err
		}
		s, err := NewExponentialDelay(ExponentialDelayOptions{
			InitialBackoff:      c.Duration(config.ExponentialDelayInitialBackoff),
			MaxBackoff:          c.Duration(config.ExponentialDelayMaxBackoff),
			Multiplier:          mult,
			ResetThreshold:      c.Duration(config.ExponentialDelayResetBackoffThreshold),
			Jitter:              jitter,
			AttemptsBeforeReset: c.Int(config.ExponentialDelayAttemptsBeforeResetBackoff),
		})
		return checked(c, typ, s, err, map[string]config.Key{
			"initial backoff":               config.ExponentialDelayInitialBackoff,
			"max backoff":                   config.ExponentialDelayMaxBackoff,
			"backoff multiplier":            config.ExponentialDelayBackoffMultiplier,
			"reset backoff threshold":       config.ExponentialDelayResetBackoffThreshold,
			"jitter factor":                 config.ExponentialDelayJitterFactor,
			"attempts before reset backoff": config.ExponentialDelayAttemptsBeforeResetBackoff,
		})
	}
	return nil, fmt.Errorf("config %s=%q: unknown restart strategy; use none, fixed-delay, exponential-delay or failure-rate",
		config.RestartStrategyType.Name, c.String(config.RestartStrategyType))
}

// checked returns s, or turns a constructor's parameter error into one that
// names the configuration key and its value. (It also keeps a nil *T out of
// the Strategy interface.)
func checked[S Strategy](c *config.Config, typ string, s S, err error, keys map[string]config.Key) (Strategy, error) {
	if err == nil {
		return s, nil
	}
	var pe *paramError
	if errors.As(err, &pe) {
		if k, ok := keys[pe.param]; ok {
			return nil, fmt.Errorf("config %s=%q: %s (for restart-strategy.type %s)", k.Name, c.String(k), pe.rule, typ)
		}
	}
	return nil, err
}

func parseFloat(c *config.Config, k config.Key, example string) (float64, error) {
	v := strings.TrimSpace(c.String(k))
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("config %s=%q: not a number; write e.g. %s", k.Name, v, example)
	}
	return f, nil
}

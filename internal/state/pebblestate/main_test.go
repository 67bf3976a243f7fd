package pebblestate

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its backends, so Pebble's goroutines are gone.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

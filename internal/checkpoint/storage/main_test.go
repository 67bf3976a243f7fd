package storage

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: an S3
// listing, a delete batch or an idle HTTP connection that Close did not end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

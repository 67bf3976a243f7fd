package state_test

import (
	"testing"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/state"
	"github.com/weirstream/weir/internal/state/statetest"
)

// The conformance suite runs against the reference backends too, so that
// what it demands of other backends is what Heap and MemRaw do.
func TestConformance(t *testing.T) {
	heap := func(_ testing.TB, r keygroup.Range) state.Backend { return state.NewHeapBackend(r) }
	memRaw := func(_ testing.TB, r keygroup.Range) state.Backend { return state.NewMemRawBackend(r) }
	t.Run("heap/Behaviours", func(t *testing.T) { statetest.RunBehaviours(t, heap) })
	t.Run("heap/Snapshots", func(t *testing.T) { statetest.RunSnapshots(t, heap) })
	t.Run("memraw/Behaviours", func(t *testing.T) { statetest.RunBehaviours(t, memRaw) })
	t.Run("memraw/RawStore", func(t *testing.T) { statetest.RunRawStore(t, memRaw) })
	t.Run("memraw/Snapshots", func(t *testing.T) { statetest.RunSnapshots(t, memRaw) })
}

package runtime

import (
	"fmt"

	"github.com/weirstream/weir/internal/state"
)

// Keyed state backends of a task: the chain's keyed operators create them
// through OperatorContext.NewKeyedBackend, and the task owns them. It
// restores native keyed state (incremental checkpoints) into a backend as
// it creates it, before the operator restores the canonical state of its
// RestoredState (which holds none for those subtasks), and disposes of
// every backend that holds more than memory when the task ends, however it
// ends: state lives on in checkpoints, not in a task's working directory.

// newKeyedBackend creates the keyed backend of chain operator i, with the
// native keyed state of its restored snapshots, and records it for
// disposal. An error fails the task (a backend factory reports its own
// errors the same way, with Fail).
func (t *task) newKeyedBackend(i int) state.Backend {
	b := t.newBackend(t.keyGroups)
	t.backends = append(t.backends, b)
	r := t.restore[t.ops[i].uid]
	if r == nil {
		return b
	}
	natives := make([]any, len(r.Snapshots))
	found := false
	for j, s := range r.Snapshots {
		if s != nil && s.Native != nil {
			natives[j], found = s.Native, true
		}
	}
	if !found {
		return b
	}
	if err := restoreNative(t, b, natives); err != nil {
		panic(failure{fmt.Errorf("restoring keyed state from checkpoint %d: %w", r.Checkpoint, err)})
	}
	return b
}

// restoreNative restores natives into b: natively if b can, else through
// the canonical form of each.
func restoreNative(t *task, b state.Backend, natives []any) error {
	if nr, ok := b.(state.NativeRestorer); ok {
		return nr.RestoreNative(t.ctx, natives)
	}
	for _, n := range natives {
		if n == nil {
			continue
		}
		ns, ok := n.(state.NativeState)
		if !ok {
			return fmt.Errorf("the checkpoint holds keyed state of type %T, which state backend %T cannot restore", n, b)
		}
		s, err := ns.ReadCanonical(t.ctx, t.keyGroups)
		if err != nil {
			return fmt.Errorf("reading %s keyed state: %w", ns.BackendName(), err)
		}
		if err := b.Restore(s); err != nil {
			return err
		}
	}
	return nil
}

// disposeBackends disposes of the task's backends, once its operators are
// closed. Failures are not the job's: they leave files in the backend's
// working directory, which the cluster removes with the job's.
func (t *task) disposeBackends() {
	for _, b := range t.backends {
		if d, ok := b.(state.Disposer); ok {
			_ = d.Dispose()
		}
	}
	t.backends = nil
}

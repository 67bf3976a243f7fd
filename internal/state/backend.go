package state

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"sort"

	"github.com/weirstream/weir/internal/keygroup"
)

// Backend is the keyed state of one operator instance (one subtask),
// covering its key-group range.
type Backend interface {
	// SetCurrentKey sets the key (encoded bytes) and its key group that
	// state accesses and timer registrations apply to. The backend copies
	// key; it does not allocate once its buffer has grown. It panics if
	// keyGroup is outside KeyGroupRange: the record reached the wrong
	// subtask.
	SetCurrentKey(key []byte, keyGroup int)
	// CurrentKey returns the current key; the slice is the backend's and is
	// valid until the next SetCurrentKey.
	CurrentKey() []byte
	// CurrentKeyGroup returns the current key's key group, or -1 before the
	// first SetCurrentKey.
	CurrentKeyGroup() int
	// SetCurrentNamespace sets the namespace (e.g. an encoded window) of
	// later accesses; empty (the default) is the plain keyed state. The
	// backend copies ns without allocating once its buffer has grown.
	SetCurrentNamespace(ns []byte)
	// CurrentNamespace returns the current namespace (empty by default).
	CurrentNamespace() []byte
	// KeyGroupRange returns the key groups this backend holds.
	KeyGroupRange() keygroup.Range
	// Snapshot returns the canonical, backend-independent copy of all state.
	Snapshot() (*Snapshot, error)
	// Restore adds the entries of s whose key group is in KeyGroupRange and
	// ignores the rest. To rescale, restore every old subtask's snapshot.
	// After an error the backend is in an undefined state.
	Restore(s *Snapshot) error
}

// Disposer is implemented by backends that hold more than Go memory: a
// Pebble backend's open DB and its local working directory. The task that
// created the backend disposes of it when the task ends, however it ends
// (finished, failed or canceled): its state lives on in checkpoints, not in
// the backend. The backend is unusable afterwards; disposing twice is a
// no-op. Heap holds only memory and does not implement it.
type Disposer interface {
	Dispose() error
}

// NativeRestorer is implemented by backends that restore from checkpoints
// in their own format (incremental checkpoints). The task calls
// RestoreNative on a new backend, before the operator restores canonical
// state, with the native state of every old subtask of the operator
// (runtime.OperatorSnapshot.Native; nil for subtasks without); the backend
// keeps the key groups of its range, as Restore does.
type NativeRestorer interface {
	RestoreNative(ctx context.Context, natives []any) error
}

// NativeState is implemented by native state to restore (the Native of a
// restored runtime.OperatorSnapshot), so that a backend of another type can
// restore it through its canonical form.
type NativeState interface {
	// BackendName names the backend that wrote it, e.g. "pebble".
	BackendName() string
	// ReadCanonical returns the canonical snapshot of the key groups r.
	ReadCanonical(ctx context.Context, r keygroup.Range) (*Snapshot, error)
}

// KeyContext implements the current-key part of Backend: the current key,
// key group and namespace, copied into reused buffers. Backends embed it.
type KeyContext struct {
	kgRange  keygroup.Range
	key      []byte
	keyGroup int
	ns       []byte
	// gen changes whenever the key or namespace is set, so that a state may
	// cache where it found the current entry while gen is unchanged.
	gen uint64
}

// NewKeyContext returns a KeyContext for the key groups r, with no current key.
func NewKeyContext(r keygroup.Range) KeyContext {
	return KeyContext{kgRange: r, keyGroup: -1, gen: 1}
}

// SetCurrentKey implements Backend.
func (c *KeyContext) SetCurrentKey(key []byte, keyGroup int) {
	if !c.kgRange.Contains(keyGroup) {
		panicKeyGroup(keyGroup, c.kgRange)
	}
	c.key = append(c.key[:0], key...)
	c.keyGroup = keyGroup
	c.gen++
}

// CurrentKey implements Backend.
func (c *KeyContext) CurrentKey() []byte { return c.key }

// CurrentKeyGroup implements Backend.
func (c *KeyContext) CurrentKeyGroup() int { return c.keyGroup }

// SetCurrentNamespace implements Backend.
func (c *KeyContext) SetCurrentNamespace(ns []byte) {
	c.ns = append(c.ns[:0], ns...)
	c.gen++
}

// CurrentNamespace implements Backend.
func (c *KeyContext) CurrentNamespace() []byte { return c.ns }

// KeyGroupRange implements Backend.
func (c *KeyContext) KeyGroupRange() keygroup.Range { return c.kgRange }

// checkKeyGroup returns an error unless kg is in the context's range.
func (c *KeyContext) checkKeyGroup(kg int) error {
	if !c.kgRange.Contains(kg) {
		return fmt.Errorf("key group %d is outside this backend's key groups %v", kg, c.kgRange)
	}
	return nil
}

func panicKeyGroup(kg int, r keygroup.Range) {
	panic(fmt.Sprintf("state: key group %d is outside this backend's key groups %v: the record was routed to the wrong subtask (key groups must come from keygroup.ForKeyHash with the operator's max parallelism)", kg, r))
}

func panicNoKey(state string) {
	panic(fmt.Sprintf("state: %q accessed with no current key: keyed state can only be used while processing a keyed record or timer (call SetCurrentKey first)", state))
}

// AccessError is the panic value when a state access fails in a way the
// typed state interfaces cannot return: a RawStore's error, or stored bytes
// that do not decode. The task running the operator recovers it and fails.
type AccessError struct {
	State string // state name
	Op    string // e.g. "ValueState.Value"
	Err   error
}

func (e *AccessError) Error() string { return fmt.Sprintf("state %q: %s: %v", e.State, e.Op, e.Err) }
func (e *AccessError) Unwrap() error { return e.Err }

// Kind is the kind of a state. Its values appear in snapshots; never
// renumber them.
type Kind uint8

const (
	KindValue       Kind = 1
	KindList        Kind = 2
	KindMap         Kind = 3
	KindReducing    Kind = 4
	KindAggregating Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindValue:
		return "value"
	case KindList:
		return "list"
	case KindMap:
		return "map"
	case KindReducing:
		return "reducing"
	case KindAggregating:
		return "aggregating"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindValue && k <= KindAggregating }

// ValueState holds one value per key and namespace.
type ValueState[V any] interface {
	// Value returns the value and true, or the zero value and false if none.
	Value() (V, bool)
	Update(V)
	Clear()
}

// ListState holds a list per key and namespace.
type ListState[V any] interface {
	// Get returns the list (nil if empty). The heap backend returns its own
	// slice (capacity clipped): read it, do not modify it.
	Get() []V
	Add(V)
	AddAll([]V)
	// Update replaces the list; an empty list clears it.
	Update([]V)
	Clear()
}

// MapState holds a map per key and namespace. An empty map is no entry.
type MapState[UK comparable, UV any] interface {
	Get(UK) (UV, bool)
	Put(UK, UV)
	Remove(UK)
	Contains(UK) bool
	// All and Keys iterate in an unspecified order (raw backends: by encoded
	// user key). The loop body may Put and Remove.
	All() iter.Seq2[UK, UV]
	Keys() iter.Seq[UK]
	IsEmpty() bool
	Clear()
}

// ReducingState folds added values with a reduce function.
type ReducingState[V any] interface {
	// Get returns the reduction of all added values, false if none.
	Get() (V, bool)
	Add(V)
	Clear()
}

// AggregateFunction folds inputs into an accumulator; Merge combines two
// accumulators (merging windows).
type AggregateFunction[IN, ACC, OUT any] interface {
	CreateAccumulator() ACC
	Add(in IN, acc ACC) ACC
	GetResult(acc ACC) OUT
	Merge(a, b ACC) ACC
}

// AggregatingState folds added inputs with an AggregateFunction.
type AggregatingState[IN, OUT any] interface {
	// Get returns the result of the accumulator, false if nothing was added.
	Get() (OUT, bool)
	Add(IN)
	Clear()
}

// Registry records the states of one backend by name: their kind, their Go
// types and the state object, so that asking for a name again returns the
// same state. A RawStore keeps one and returns it from Registry.
type Registry struct {
	states map[string]*registration
}

type registration struct {
	kind  Kind
	desc  string // e.g. "ValueState[int]"; empty while only restored
	state any    // the typed state; nil while only restored
}

// Kind returns the kind of the state called name, registered or restored.
func (r *Registry) Kind(name string) (Kind, bool) {
	reg, ok := r.states[name]
	if !ok {
		return 0, false
	}
	return reg.kind, true
}

// Declare records that state name holds entries of kind k, as a restored
// snapshot says; it fails if name is known with another kind.
func (r *Registry) Declare(name string, k Kind) error {
	if !k.valid() {
		return fmt.Errorf("state %q has unknown kind %d in the snapshot", name, k)
	}
	if reg, ok := r.states[name]; ok {
		if reg.kind != k {
			return fmt.Errorf("snapshot holds state %q as %s state, but this operator has it as %s state", name, k, reg.kind)
		}
		return nil
	}
	if r.states == nil {
		r.states = make(map[string]*registration)
	}
	r.states[name] = &registration{kind: k}
	return nil
}

// Names returns the names of all registered or restored states, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.states))
	for n := range r.states {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// register returns the state called name, creating it with create the first
// time. S is the backend's concrete state type, so a second request with
// other type parameters fails the assertion and is refused.
func register[S any](r *Registry, name string, kind Kind, desc string, create func() (S, error)) (S, error) {
	var zero S
	if name == "" {
		return zero, errors.New("state name must not be empty: give each state of an operator its own name")
	}
	reg := r.states[name]
	if reg != nil {
		if reg.state != nil {
			if s, ok := reg.state.(S); ok && reg.desc == desc {
				return s, nil
			}
			return zero, fmt.Errorf("state %q is already registered as %s, so it cannot also be %s: give the second state another name", name, reg.desc, desc)
		}
		if reg.kind != kind {
			return zero, fmt.Errorf("state %q was restored as %s state, so it cannot be registered as %s: keep the state's kind, or give the new state another name", name, reg.kind, desc)
		}
	}
	s, err := create()
	if err != nil {
		return zero, err
	}
	if r.states == nil {
		r.states = make(map[string]*registration)
	}
	r.states[name] = &registration{kind: kind, desc: desc, state: s}
	return s, nil
}

// typeName names T for error messages.
func typeName[T any]() string { return reflect.TypeFor[T]().String() }

func errUnsupportedBackend(b Backend) error {
	return fmt.Errorf("state backend %T supports no typed state: use *state.Heap or a backend that implements state.RawStore", b)
}

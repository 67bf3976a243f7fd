package state

import "fmt"

// NewValueState returns the value state called name of backend b, creating
// it on first use. Asking again for the same name returns the same state;
// asking with another kind or other types is an error.
func NewValueState[V any](b Backend, name string) (ValueState[V], error) {
	desc := "ValueState[" + typeName[V]() + "]"
	switch b := b.(type) {
	case *Heap:
		s, err := register(&b.registry, name, KindValue, desc, func() (*heapValue[V], error) {
			c, err := codecFor[V](name)
			if err != nil {
				return nil, err
			}
			s := &heapValue[V]{heapScalar[V]{heapTable: newHeapTable[V](b, name, KindValue), c: c}}
			return s, b.adopt(name, s)
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case RawStore:
		s, err := register(b.Registry(), name, KindValue, desc, func() (*rawValue[V], error) {
			c, err := codecFor[V](name)
			if err != nil {
				return nil, err
			}
			return &rawValue[V]{rawBase: rawBase{b, name}, c: c}, nil
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, errUnsupportedBackend(b)
}

// NewListState returns the list state called name of backend b (see
// NewValueState for how names are resolved).
func NewListState[V any](b Backend, name string) (ListState[V], error) {
	desc := "ListState[" + typeName[V]() + "]"
	switch b := b.(type) {
	case *Heap:
		s, err := register(&b.registry, name, KindList, desc, func() (*heapList[V], error) {
			c, err := codecFor[V](name)
			if err != nil {
				return nil, err
			}
			s := &heapList[V]{heapTable: newHeapTable[[]V](b, name, KindList), c: c}
			return s, b.adopt(name, s)
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case RawStore:
		s, err := register(b.Registry(), name, KindList, desc, func() (*rawList[V], error) {
			c, err := codecFor[V](name)
			if err != nil {
				return nil, err
			}
			return &rawList[V]{rawBase: rawBase{b, name}, c: c}, nil
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, errUnsupportedBackend(b)
}

// NewMapState returns the map state called name of backend b (see
// NewValueState for how names are resolved).
func NewMapState[UK comparable, UV any](b Backend, name string) (MapState[UK, UV], error) {
	desc := "MapState[" + typeName[UK]() + ", " + typeName[UV]() + "]"
	switch b := b.(type) {
	case *Heap:
		s, err := register(&b.registry, name, KindMap, desc, func() (*heapMap[UK, UV], error) {
			kc, err := codecFor[UK](name)
			if err != nil {
				return nil, err
			}
			vc, err := codecFor[UV](name)
			if err != nil {
				return nil, err
			}
			s := &heapMap[UK, UV]{heapTable: newHeapTable[map[UK]UV](b, name, KindMap), kc: kc, vc: vc}
			return s, b.adopt(name, s)
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case RawStore:
		s, err := register(b.Registry(), name, KindMap, desc, func() (*rawMap[UK, UV], error) {
			kc, err := codecFor[UK](name)
			if err != nil {
				return nil, err
			}
			vc, err := codecFor[UV](name)
			if err != nil {
				return nil, err
			}
			return &rawMap[UK, UV]{rawBase: rawBase{b, name}, kc: kc, vc: vc}, nil
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, errUnsupportedBackend(b)
}

// NewReducingState returns the reducing state called name of backend b (see
// NewValueState for how names are resolved). A second request for the same
// name returns the first state, with the first reduce function.
func NewReducingState[V any](b Backend, name string, reduce func(a, b V) V) (ReducingState[V], error) {
	if reduce == nil {
		return nil, fmt.Errorf("reducing state %q needs a reduce function, got nil", name)
	}
	desc := "ReducingState[" + typeName[V]() + "]"
	switch b := b.(type) {
	case *Heap:
		s, err := register(&b.registry, name, KindReducing, desc, func() (*heapReducing[V], error) {
			c, err := codecFor[V](name)
			if err != nil {
				return nil, err
			}
			s := &heapReducing[V]{heapScalar: heapScalar[V]{heapTable: newHeapTable[V](b, name, KindReducing), c: c}, reduce: reduce}
			return s, b.adopt(name, s)
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case RawStore:
		s, err := register(b.Registry(), name, KindReducing, desc, func() (*rawReducing[V], error) {
			c, err := codecFor[V](name)
			if err != nil {
				return nil, err
			}
			return &rawReducing[V]{rawBase: rawBase{b, name}, c: c, reduce: reduce}, nil
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, errUnsupportedBackend(b)
}

// NewAggregatingState returns the aggregating state called name of backend
// b (see NewValueState for how names are resolved). The accumulator type
// ACC is what is stored; a second request for the same name returns the
// first state, with the first function.
func NewAggregatingState[IN, ACC, OUT any](b Backend, name string, agg AggregateFunction[IN, ACC, OUT]) (AggregatingState[IN, OUT], error) {
	if agg == nil {
		return nil, fmt.Errorf("aggregating state %q needs an AggregateFunction, got nil", name)
	}
	desc := "AggregatingState[" + typeName[IN]() + ", " + typeName[OUT]() + "] with accumulator " + typeName[ACC]()
	switch b := b.(type) {
	case *Heap:
		s, err := register(&b.registry, name, KindAggregating, desc, func() (*heapAggregating[IN, ACC, OUT], error) {
			c, err := codecFor[ACC](name)
			if err != nil {
				return nil, err
			}
			s := &heapAggregating[IN, ACC, OUT]{heapScalar: heapScalar[ACC]{heapTable: newHeapTable[ACC](b, name, KindAggregating), c: c}, agg: agg}
			return s, b.adopt(name, s)
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case RawStore:
		s, err := register(b.Registry(), name, KindAggregating, desc, func() (*rawAggregating[IN, ACC, OUT], error) {
			c, err := codecFor[ACC](name)
			if err != nil {
				return nil, err
			}
			return &rawAggregating[IN, ACC, OUT]{rawBase: rawBase{b, name}, c: c, agg: agg}, nil
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, errUnsupportedBackend(b)
}

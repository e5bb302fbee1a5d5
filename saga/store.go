package saga

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Errors of stores and sagas, matched with errors.Is.
var (
	// ErrNotFound: no instance has the correlation value or id asked for.
	ErrNotFound = errors.New("saga: instance not found")
	// ErrConflict: a save lost a race: another handling changed the
	// instance since it was read, or inserted one with the same
	// correlation value. The handling is retried by the bus.
	ErrConflict = errors.New("saga: concurrent change of the instance")
)

// Record is an instance as a [Store] keeps it.
type Record struct {
	// Saga is the saga's name; ID the instance's id, unique within the
	// saga; Correlation its correlation value, unique within the saga.
	Saga, ID, Correlation string
	// Version counts the saves of the instance: 1 after the insert. Update
	// and Delete take the version that was read.
	Version int64
	// State is the instance's state, encoded (JSON).
	State []byte
	// Originator is the reply address of the message that started the
	// instance, and OriginatorCorrelationID the correlation id a reply to
	// it carries: see [Instance.ReplyToOriginator].
	Originator, OriginatorCorrelationID string
	// Completed marks an instance kept after its completion
	// ([Options.KeepCompleted]) until ExpiresAt.
	Completed bool
	ExpiresAt time.Time
}

// Store keeps the instances of sagas. Its methods are safe for concurrent
// use. A context may carry a transaction the store takes part in (the SQL
// stores use outbox.Tx): what a method writes then commits or rolls back
// with it.
type Store interface {
	// Find returns the instance of saga whose correlation value is
	// correlation, or an error wrapping ErrNotFound. A completed record
	// whose time ran out counts as not found.
	Find(ctx context.Context, saga, correlation string) (Record, error)
	// Get returns the instance of saga with the id, or an error wrapping
	// ErrNotFound, as Find does.
	Get(ctx context.Context, saga, id string) (Record, error)
	// Insert stores a new instance with version 1 (r.Version is
	// ignored). It fails with an error wrapping ErrConflict if the saga
	// has an instance with the same id or correlation value (an expired
	// completed record is replaced). Concurrent inserts of one value:
	// exactly one succeeds.
	Insert(ctx context.Context, r Record) error
	// Update replaces the instance r.ID of r.Saga with r, version
	// r.Version+1, if its stored version is r.Version; otherwise, or if
	// it is gone, it fails with an error wrapping ErrConflict.
	Update(ctx context.Context, r Record) error
	// Delete deletes the instance r.ID of r.Saga if its stored version is
	// r.Version; otherwise, or if it is gone, it fails with an error
	// wrapping ErrConflict.
	Delete(ctx context.Context, r Record) error
	// DeleteExpired deletes up to limit completed records whose ExpiresAt
	// is before now, and returns how many it deleted. Call it now and then
	// when sagas keep completed instances.
	DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error)
}

// MemoryStore is a [Store] in memory, for tests and examples. Its zero
// value is not usable: call [NewMemoryStore]. It takes part in no
// transaction.
type MemoryStore struct {
	mu    sync.Mutex
	byID  map[memKey]*Record
	byKey map[memKey]*Record
}

type memKey struct{ saga, key string }

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{byID: map[memKey]*Record{}, byKey: map[memKey]*Record{}}
}

// clone copies r, so that a caller never shares the store's state bytes.
func clone(r Record) Record {
	r.State = slices.Clone(r.State)
	return r
}

func expired(r *Record, now time.Time) bool {
	return r.Completed && !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

func (s *MemoryStore) lookup(m map[memKey]*Record, saga, key string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := m[memKey{saga, key}]
	if !ok || expired(r, time.Now()) {
		return Record{}, ErrNotFound
	}
	return clone(*r), nil
}

// Find implements [Store].
func (s *MemoryStore) Find(ctx context.Context, saga, correlation string) (Record, error) {
	return s.lookup(s.byKey, saga, correlation)
}

// Get implements [Store].
func (s *MemoryStore) Get(ctx context.Context, saga, id string) (Record, error) {
	return s.lookup(s.byID, saga, id)
}

// Insert implements [Store].
func (s *MemoryStore) Insert(ctx context.Context, r Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byKey[memKey{r.Saga, r.Correlation}]; ok {
		if !expired(old, time.Now()) {
			return ErrConflict
		}
		s.remove(old)
	}
	if _, ok := s.byID[memKey{r.Saga, r.ID}]; ok {
		return ErrConflict
	}
	r = clone(r)
	r.Version = 1
	s.byID[memKey{r.Saga, r.ID}] = &r
	s.byKey[memKey{r.Saga, r.Correlation}] = &r
	return nil
}

// Update implements [Store].
func (s *MemoryStore) Update(ctx context.Context, r Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.byID[memKey{r.Saga, r.ID}]
	if !ok || old.Version != r.Version || old.Correlation != r.Correlation {
		return ErrConflict
	}
	r = clone(r)
	r.Version++
	*old = r
	return nil
}

// Delete implements [Store].
func (s *MemoryStore) Delete(ctx context.Context, r Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.byID[memKey{r.Saga, r.ID}]
	if !ok || old.Version != r.Version {
		return ErrConflict
	}
	s.remove(old)
	return nil
}

func (s *MemoryStore) remove(r *Record) {
	delete(s.byID, memKey{r.Saga, r.ID})
	delete(s.byKey, memKey{r.Saga, r.Correlation})
}

// DeleteExpired implements [Store].
func (s *MemoryStore) DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.byID {
		if n == limit {
			break
		}
		if expired(r, now) {
			s.remove(r)
			n++
		}
	}
	return n, nil
}

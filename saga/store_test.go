package saga_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/saga"
)

func TestMemoryStore(t *testing.T) {
	testStore(t, saga.NewMemoryStore())
}

// testStore checks the contract of saga.Store on s.
func testStore(t *testing.T, s saga.Store) {
	r := saga.Record{Saga: "S", ID: "id1", Correlation: "k1", State: []byte(`{"a":1}`), Originator: "client", OriginatorCorrelationID: "c1"}
	if _, err := s.Find(ctx, "S", "k1"); !errors.Is(err, saga.ErrNotFound) {
		t.Fatalf("Find of nothing: %v", err)
	}
	if _, err := s.Get(ctx, "S", "id1"); !errors.Is(err, saga.ErrNotFound) {
		t.Fatalf("Get of nothing: %v", err)
	}
	must(t, s.Insert(ctx, r))
	got, err := s.Find(ctx, "S", "k1")
	must(t, err)
	if got.ID != "id1" || got.Version != 1 || string(got.State) != `{"a":1}` || got.Originator != "client" || got.OriginatorCorrelationID != "c1" || got.Completed {
		t.Errorf("Find: %+v", got)
	}
	if got2, err := s.Get(ctx, "S", "id1"); err != nil || got2.Correlation != "k1" {
		t.Errorf("Get: %+v, %v", got2, err)
	}
	if _, err := s.Find(ctx, "T", "k1"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Find in another saga: %v", err)
	}
	// One correlation value, one instance; one id, one instance.
	if err := s.Insert(ctx, saga.Record{Saga: "S", ID: "id2", Correlation: "k1", State: []byte(`{}`)}); !errors.Is(err, saga.ErrConflict) {
		t.Errorf("Insert of a taken correlation value: %v", err)
	}
	if err := s.Insert(ctx, saga.Record{Saga: "S", ID: "id1", Correlation: "k2", State: []byte(`{}`)}); !errors.Is(err, saga.ErrConflict) {
		t.Errorf("Insert of a taken id: %v", err)
	}
	must(t, s.Insert(ctx, saga.Record{Saga: "T", ID: "id1", Correlation: "k1", State: []byte(`{}`)}))

	got.State = []byte(`{"a":2}`)
	must(t, s.Update(ctx, got))
	if err := s.Update(ctx, got); !errors.Is(err, saga.ErrConflict) {
		t.Errorf("Update from a stale version: %v", err)
	}
	got, err = s.Get(ctx, "S", "id1")
	must(t, err)
	if got.Version != 2 || string(got.State) != `{"a":2}` {
		t.Errorf("after Update: %+v", got)
	}
	stale := got
	got.Completed, got.ExpiresAt = true, time.Now().Add(time.Hour)
	must(t, s.Update(ctx, got))
	if err := s.Delete(ctx, stale); !errors.Is(err, saga.ErrConflict) {
		t.Errorf("Delete from a stale version: %v", err)
	}
	got, err = s.Find(ctx, "S", "k1")
	must(t, err)
	if !got.Completed || got.Version != 3 {
		t.Errorf("completed: %+v", got)
	}
	must(t, s.Delete(ctx, got))
	if _, err := s.Find(ctx, "S", "k1"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Find after Delete: %v", err)
	}
	if err := s.Delete(ctx, got); !errors.Is(err, saga.ErrConflict) {
		t.Errorf("Delete of nothing: %v", err)
	}

	// An expired completed record is not found, gives way to a new
	// instance with its value, and DeleteExpired removes it.
	old := saga.Record{Saga: "S", ID: "id3", Correlation: "k3", State: []byte(`{}`)}
	must(t, s.Insert(ctx, old))
	old.Version, old.Completed, old.ExpiresAt = 1, true, time.Now().Add(-time.Second)
	must(t, s.Update(ctx, old))
	if _, err := s.Find(ctx, "S", "k3"); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Find of an expired record: %v", err)
	}
	must(t, s.Insert(ctx, saga.Record{Saga: "S", ID: "id4", Correlation: "k3", State: []byte(`{}`)}))
	old = saga.Record{Saga: "S", ID: "id5", Correlation: "k5", State: []byte(`{}`)}
	must(t, s.Insert(ctx, old))
	old.Version, old.Completed, old.ExpiresAt = 1, true, time.Now().Add(-time.Second)
	must(t, s.Update(ctx, old))
	if n, err := s.DeleteExpired(ctx, time.Now(), 10); n != 1 || err != nil {
		t.Errorf("DeleteExpired: %d, %v; want 1", n, err)
	}
	if _, err := s.Get(ctx, "S", "id4"); err != nil {
		t.Errorf("DeleteExpired deleted a live record: %v", err)
	}

	// Concurrent inserts of one value: exactly one wins; concurrent
	// updates of one version: exactly one wins.
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Insert(ctx, saga.Record{Saga: "S", ID: "race" + string(rune('a'+i)), Correlation: "race", State: []byte(`{}`)})
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, saga.ErrConflict):
			t.Errorf("concurrent Insert: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent inserts of one value succeeded, want 1", wins)
	}
	cur, err := s.Find(ctx, "S", "race")
	must(t, err)
	for i := range n {
		wg.Go(func() { errs[i] = s.Update(ctx, cur) })
	}
	wg.Wait()
	wins = 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, saga.ErrConflict):
			t.Errorf("concurrent Update: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent updates of one version succeeded, want 1", wins)
	}
}

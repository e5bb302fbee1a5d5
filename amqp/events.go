package amqp

import (
	"sync"
	"time"

	"github.com/busline/busline/transport"
)

// eventHub fans events out to watchers. Each watcher has its own goroutine
// and an unbounded queue, so a slow watcher never blocks the transport, and
// sees the events in order.
type eventHub struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
	closed   bool
	wg       sync.WaitGroup
}

type watcher struct {
	f     func(transport.Event)
	mu    sync.Mutex
	queue []transport.Event
	wake  chan struct{}
	stop  chan struct{}
	flush chan struct{}
	once  sync.Once
}

func (h *eventHub) emit(e transport.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		w.mu.Lock()
		w.queue = append(w.queue, e)
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// watch registers f; see transport.Watcher.
func (h *eventHub) watch(f func(transport.Event)) (stop func()) {
	w := &watcher{f: f, wake: make(chan struct{}, 1), stop: make(chan struct{}), flush: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return func() {}
	}
	if h.watchers == nil {
		h.watchers = make(map[*watcher]struct{})
	}
	h.watchers[w] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		w.run()
	}()
	return func() {
		h.mu.Lock()
		delete(h.watchers, w)
		h.mu.Unlock()
		w.once.Do(func() { close(w.stop) })
	}
}

func (w *watcher) run() {
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, e := range batch {
			select {
			case <-w.stop:
				return
			default:
			}
			w.f(e)
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-w.stop:
			return
		case <-w.flush:
			// The transport is closing and everything queued before has
			// been delivered.
			return
		case <-w.wake:
		}
	}
}

// close delivers the events already emitted (such as ConsumerStopped of the
// consumers Close just stopped), then stops every watcher and waits for
// their goroutines.
func (h *eventHub) close() {
	h.mu.Lock()
	h.closed = true
	ws := h.watchers
	h.watchers = nil
	h.mu.Unlock()
	for w := range ws {
		close(w.flush)
	}
	h.wg.Wait()
}

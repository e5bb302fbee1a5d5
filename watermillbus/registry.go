package watermillbus

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/busline/busline/transport"
)

// Registry keeps the topology a [Transport] emulates on a Watermill
// backend: which queues exist, with which type and arguments, and under
// which patterns each is bound on the topic exchange. Watermill backends
// have topics, not exchanges and bindings, so routing happens in the
// publishing process, against the Registry: every transport that publishes
// to a queue or consumes from it must see the same Registry.
//
// [NewMemoryRegistry] keeps it in memory, for the transports of one
// process; services in several processes need an implementation backed by
// storage they share (a database table, a compacted Kafka topic), which
// this interface lets them plug in.
type Registry interface {
	// DeclareQueue creates q, or checks that the existing queue has q's
	// type and arguments ([transport.ErrTopologyConflict] otherwise),
	// except for a Shared queue, which is used as found. It reports
	// whether the queue was created.
	DeclareQueue(ctx context.Context, q transport.Queue) (created bool, err error)
	// QueueExists reports whether queue was declared and not deleted.
	QueueExists(ctx context.Context, queue string) (bool, error)
	// DeleteQueue forgets queue and its bindings.
	DeleteQueue(ctx context.Context, queue string) error
	// Bind binds queue under pattern; [transport.ErrNotFound] if queue
	// does not exist.
	Bind(ctx context.Context, queue, pattern string) error
	// Unbind removes that binding, if there is one.
	Unbind(ctx context.Context, queue, pattern string) error
	// Route returns the queues bound under a pattern that matches
	// routingKey, each once, in a stable order.
	Route(ctx context.Context, routingKey string) ([]string, error)
}

// NewMemoryRegistry returns a Registry kept in memory. Give the same one to
// every transport of the process that shares a backend.
func NewMemoryRegistry() Registry {
	return &memoryRegistry{queues: map[string]*registeredQueue{}}
}

type memoryRegistry struct {
	mu     sync.RWMutex
	queues map[string]*registeredQueue
}

type registeredQueue struct {
	q        transport.Queue
	patterns map[string][]string // pattern → its words
}

func (r *memoryRegistry) DeclareQueue(_ context.Context, q transport.Queue) (bool, error) {
	args, err := q.Arguments.Normalize()
	if err != nil {
		return false, err
	}
	q.Arguments = args
	if q.Type == "" {
		q.Type = transport.Quorum
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.queues[q.Name]
	if !ok {
		r.queues[q.Name] = &registeredQueue{q: q, patterns: map[string][]string{}}
		return true, nil
	}
	if q.Shared || old.q.Temporary || q.Temporary {
		return false, nil
	}
	if old.q.Type != q.Type {
		return false, fmt.Errorf("%w: queue %q exists as a %s queue, declared as %s", transport.ErrTopologyConflict, q.Name, old.q.Type, q.Type)
	}
	if !reflect.DeepEqual(old.q.Arguments, q.Arguments) && (len(old.q.Arguments) > 0 || len(q.Arguments) > 0) {
		return false, fmt.Errorf("%w: queue %q exists with arguments %v, declared with %v", transport.ErrTopologyConflict, q.Name, old.q.Arguments, q.Arguments)
	}
	return false, nil
}

func (r *memoryRegistry) QueueExists(_ context.Context, queue string) (bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.queues[queue]
	return ok, nil
}

func (r *memoryRegistry) DeleteQueue(_ context.Context, queue string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.queues, queue)
	return nil
}

func (r *memoryRegistry) Bind(_ context.Context, queue, pattern string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rq, ok := r.queues[queue]
	if !ok {
		return fmt.Errorf("%w: queue %q", transport.ErrNotFound, queue)
	}
	rq.patterns[pattern] = words(pattern)
	return nil
}

func (r *memoryRegistry) Unbind(_ context.Context, queue, pattern string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rq, ok := r.queues[queue]; ok {
		delete(rq.patterns, pattern)
	}
	return nil
}

func (r *memoryRegistry) Route(_ context.Context, routingKey string) ([]string, error) {
	key := words(routingKey)
	r.mu.RLock()
	var out []string
	for name, rq := range r.queues {
		for _, p := range rq.patterns {
			if matchWords(p, key) {
				out = append(out, name)
				break
			}
		}
	}
	r.mu.RUnlock()
	slices.Sort(out)
	return out, nil
}

// words splits a routing key or pattern into its words: the empty string
// has none, and otherwise empty words count, as on RabbitMQ.
func words(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

// matchWords reports whether pattern matches key with RabbitMQ's topic
// rules ("*" one word, "#" zero or more, anywhere), in time proportional
// to the product of their lengths.
func matchWords(pattern, key []string) bool {
	// ok[j] is whether pattern[i:] matches key[j:], for i going down.
	ok := make([]bool, len(key)+1)
	ok[len(key)] = true
	next := make([]bool, len(key)+1)
	for i := len(pattern) - 1; i >= 0; i-- {
		w := pattern[i]
		for j := len(key); j >= 0; j-- {
			switch {
			case w == "#":
				next[j] = ok[j] || (j < len(key) && next[j+1])
			case j == len(key):
				next[j] = false
			case w == "*" || w == key[j]:
				next[j] = ok[j+1]
			default:
				next[j] = false
			}
		}
		ok, next = next, ok
	}
	return ok[0]
}

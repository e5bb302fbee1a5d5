package conformance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/busline/busline/transport"
)

// topicCase is one row of the routing table: does pattern match key?
type topicCase struct {
	name         string
	pattern, key string
	match        bool
}

// topicCases are RabbitMQ's topic rules as docs/architecture.md and
// transport.ValidateTopicPattern state them, edge by edge.
var topicCases = []topicCase{
	{"hash_matches_empty", "#", "", true},
	{"hash_matches_many", "#", "a.b.c", true},
	{"hash_matches_dot", "#", ".", true},
	{"star_not_empty", "*", "", false},
	{"star_matches_one", "*", "a", true},
	{"star_not_two", "*", "a.b", false},
	{"star_not_dot", "*", ".", false},
	{"star_matches_empty_word", "a.*", "a.", true},
	{"star_needs_a_word", "a.*", "a", false},
	{"hash_tail_zero_words", "a.#", "a", true},
	{"hash_tail_many_words", "a.#", "a.b.c", true},
	{"hash_middle_zero_words", "a.#.b", "a.b", true},
	{"hash_middle_two_words", "a.#.b", "a.x.y.b", true},
	{"hash_middle_wrong_end", "a.#.b", "a.b.c", false},
	{"hash_middle_repeated_word", "a.#.b", "a.b.b", true},
	{"hash_head", "#.b", "b", true},
	{"hash_head_many", "#.b", "a.a.b", true},
	{"hash_head_wrong_end", "#.b", "b.c", false},
	{"hash_both_ends", "#.a.#", "a", true},
	{"hash_both_ends_inner", "#.a.#", "b.a.c", true},
	{"hash_both_ends_absent", "#.a.#", "b.c", false},
	{"hash_hash_empty", "#.#", "", true},
	{"hash_hash_adjacent", "a.#.#.b", "a.b", true},
	{"star_hash_not_empty", "*.#", "", false},
	{"star_hash_one", "*.#", "a", true},
	{"hash_star_one", "#.*", "a", true},
	{"hash_star_not_empty", "#.*", "", false},
	{"star_star_dot", "*.*", ".", true},
	{"star_star_not_one", "*.*", "a", false},
	{"stars_two_dots", "*.*.*", "..", true},
	{"star_middle_empty_word", "a.*.c", "a..c", true},
	{"hash_middle_adjacent", "a.#.c", "a.c", true},
	{"empty_matches_empty", "", "", true},
	{"empty_not_word", "", "a", false},
	{"word_not_empty", "a", "", false},
	{"trailing_dot_is_a_word", "a.", "a.", true},
	{"trailing_dot_not_without", "a.", "a", false},
	{"trailing_dot_in_key", "a.b", "a.b.", false},
	{"leading_dot", ".a", ".a", true},
	{"case_sensitive", "a", "A", false},
	{"star_inside_word_is_literal", "a*", "ab", false},
	{"star_inside_word_matches_itself", "a*", "a*", true},
	{"hash_inside_word_is_literal", "a#", "a.b", false},
	{"space_is_a_byte", "a b.c", "a b.c", true},
	{"utf8_word", "é.*", "é.x", true},
	{"bytes_not_runes", "e.*", "é.x", false},
	{"literal_prefix_not_word", "ab", "abc", false},
}

// topicMatch is the reference matcher: RabbitMQ's topic rules written
// from docs/architecture.md, independently of any transport's implementation.
func topicMatch(pattern, key string) bool {
	return matchWords(words(pattern), words(key))
}

// words splits a pattern or key: "" is zero words, otherwise every "."
// separates two words, empty ones included.
func words(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

func matchWords(p, k []string) bool {
	if len(p) == 0 {
		return len(k) == 0
	}
	switch p[0] {
	case "#":
		for i := 0; i <= len(k); i++ {
			if matchWords(p[1:], k[i:]) {
				return true
			}
		}
		return false
	case "*":
		return len(k) > 0 && matchWords(p[1:], k[1:])
	default:
		return len(k) > 0 && k[0] == p[0] && matchWords(p[1:], k[1:])
	}
}

func (s *suite) routing(t *testing.T) {
	s.leaf(t, "Direct", s.routingDirect)
	s.group(t, "Topic", func(t *testing.T) {
		for _, c := range topicCases {
			s.leaf(t, c.name, func(e *env) { s.routingTopicCase(e, c) })
		}
	})
	s.leaf(t, "OneCopyPerQueue", s.routingOneCopy)
	s.leaf(t, "Random", s.routingRandom)
}

// routingDirect: the direct exchange routes by queue name, and only there.
func (s *suite) routingDirect(e *env) {
	t := e.t
	q1, q2 := e.queue("one", "topic.word"), e.queue("two")
	in1, in2 := e.inbox(q1, transport.ConsumeOptions{}), e.inbox(q2, transport.ConsumeOptions{})
	e.send(q1, "to-one")
	e.send(q2, "to-two")
	if d := in1.ack(); d.ID != "to-one" || d.Queue != q1 || d.Exchange != transport.Direct || d.RoutingKey != q1 {
		t.Errorf("queue %q delivered %q (queue %q, exchange %v, key %q), want %q by direct exchange under its name",
			q1, d.ID, d.Queue, d.Exchange, d.RoutingKey, "to-one")
	}
	in2.expect("to-two")

	missing := e.name("missing")
	err := e.tr.Dispatch(e.ctx(), direct(missing, "lost")...)
	is(t, err, transport.ErrUnroutable, "mandatory Dispatch to missing queue %q", missing)
	err = e.tr.Dispatch(e.ctx(), transport.Outgoing{RoutingKey: missing, Message: msg("dropped")})
	if err != nil {
		t.Errorf("Dispatch of a message that is not mandatory to missing queue %q = %v, want nil (dropped silently)", missing, err)
	}

	// A queue is bound on the direct exchange under its own name only, and
	// topic patterns bind it on the topic exchange only.
	err = e.tr.Dispatch(e.ctx(), transport.Outgoing{Exchange: transport.Topic, RoutingKey: q1, Mandatory: true, Message: msg("topic-by-name")})
	is(t, err, transport.ErrUnroutable, "mandatory Dispatch to the topic exchange with queue name %q as key", q1)
	err = e.tr.Dispatch(e.ctx(), transport.Outgoing{Exchange: transport.Direct, RoutingKey: "topic.word", Mandatory: true, Message: msg("direct-by-pattern")})
	is(t, err, transport.ErrUnroutable, "mandatory Dispatch to the direct exchange with topic pattern %q as key", "topic.word")
	in1.empty("after unroutable dispatches")
	in2.empty("after unroutable dispatches")
}

// routingTopicCase checks one row of the table by dispatching a mandatory
// message: delivered when the pattern matches, ErrUnroutable when not.
func (s *suite) routingTopicCase(e *env, c topicCase) {
	t := e.t
	q := e.queue("topic", c.pattern)
	in := e.inbox(q, transport.ConsumeOptions{})
	err := e.tr.Dispatch(e.ctx(), transport.Outgoing{
		Exchange: transport.Topic, RoutingKey: c.key, Mandatory: true, Message: msg("routed"),
	})
	if c.match {
		if err != nil {
			t.Fatalf("pattern %q, key %q should match, but mandatory Dispatch = %v", c.pattern, c.key, err)
		}
		d := in.ack()
		if d.ID != "routed" || d.Exchange != transport.Topic || d.RoutingKey != c.key || d.Queue != q {
			t.Errorf("delivered %q (queue %q, exchange %v, key %q), want %q from the topic exchange with key %q",
				d.ID, d.Queue, d.Exchange, d.RoutingKey, "routed", c.key)
		}
		in.empty("one copy")
		return
	}
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Errorf("pattern %q, key %q should not match, but mandatory Dispatch = %v, want ErrUnroutable "+
			"(if the harness's transports share a topic exchange, another subtest's binding may have matched)",
			c.pattern, c.key, err)
	}
	checkDispatchErrors(t, err, map[int]string{0: c.key})
	in.empty("an unroutable message")
}

// checkDispatchErrors checks that err holds one DispatchError per entry of
// want (index → routing key), each wrapping ErrUnroutable.
func checkDispatchErrors(t *testing.T, err error, want map[int]string) {
	t.Helper()
	des := dispatchErrors(err)
	got := map[int]string{}
	for _, de := range des {
		got[de.Index] = de.RoutingKey
		if !errors.Is(de, transport.ErrUnroutable) {
			t.Errorf("DispatchError for message %d = %v, want it to wrap ErrUnroutable", de.Index, de)
		}
	}
	if len(got) != len(want) || len(des) != len(want) {
		t.Errorf("Dispatch error %v holds DispatchErrors for messages %v, want exactly %v", err, keys(got), keys(want))
		return
	}
	for i, k := range want {
		if g, ok := got[i]; !ok || g != k {
			t.Errorf("DispatchError for message %d has routing key %q, want %q", i, g, k)
		}
	}
}

func keys(m map[int]string) []int {
	var ks []int
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// routingOneCopy: a queue matched by several bindings gets one copy; each
// matching queue gets its own.
func (s *suite) routingOneCopy(e *env) {
	q1 := e.queue("one", "a.*", "#", "a.b", "*.b", "a.#.b")
	q2 := e.queue("two", "a.b")
	if err := e.tr.Bind(e.ctx(), q1, "#.b"); err != nil {
		e.t.Fatalf("Bind(%q, %q): %v", q1, "#.b", err)
	}
	in1, in2 := e.inbox(q1, transport.ConsumeOptions{}), e.inbox(q2, transport.ConsumeOptions{})
	e.dispatch(transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a.b", Mandatory: true, Message: msg("ab")})
	if ids := in1.drainTo(); !slices.Equal(ids, []string{"ab"}) {
		e.t.Errorf("queue bound under six matching patterns received %q, want one copy", ids)
	}
	if ids := in2.drainTo(); !slices.Equal(ids, []string{"ab"}) {
		e.t.Errorf("second matching queue received %q, want one copy", ids)
	}
}

// routingRandom binds random patterns, dispatches random keys in one
// batch, and checks every outcome against the reference matcher.
func (s *suite) routingRandom(e *env) {
	t := e.t
	seed := s.h.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (set Harness.Seed to repeat)", seed)
	rng := newRand(seed)

	// Draw until the batch has both routable and unroutable keys, so that
	// every run checks delivery and mandatory alike.
	const nPatterns, nKeys, minEach = 10, 60, 5
	var (
		patterns []string
		batch    []transport.Outgoing
		wantErr  map[int]string
		want     [][]string
	)
	for {
		patterns = randomPatterns(rng, nPatterns)
		batch = make([]transport.Outgoing, nKeys)
		wantErr = map[int]string{}
		want = make([][]string, len(patterns))
		for i := range batch {
			var k string
			if i%2 == 0 {
				k = keyFor(rng, patterns[rng.IntN(len(patterns))])
			} else {
				k = randomKey(rng)
			}
			id := fmt.Sprintf("k%d", i)
			batch[i] = transport.Outgoing{Exchange: transport.Topic, RoutingKey: k, Mandatory: true, Message: msg(id)}
			matched := false
			for j, p := range patterns {
				if topicMatch(p, k) {
					want[j] = append(want[j], id)
					matched = true
				}
			}
			if !matched {
				wantErr[i] = k
			}
		}
		if len(wantErr) >= minEach && nKeys-len(wantErr) >= minEach {
			break
		}
	}
	t.Logf("patterns %q; %d of %d keys match none", patterns, len(wantErr), nKeys)
	inboxes := make([]*inbox, len(patterns))
	for i, p := range patterns {
		inboxes[i] = e.inbox(e.queue(fmt.Sprintf("p%d", i), p), transport.ConsumeOptions{})
	}
	err := e.tr.Dispatch(e.ctx(), batch...)
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Errorf("Dispatch = %v, want ErrUnroutable for the %d keys that match no pattern", err, len(wantErr))
	}
	checkDispatchErrors(t, err, wantErr)
	for j, in := range inboxes {
		got := in.drainTo()
		if !slices.Equal(got, want[j]) {
			t.Errorf("pattern %q received %s, want %s", patterns[j], describe(got, batch), describe(want[j], batch))
		}
	}
}

// describe lists message IDs with their routing keys.
func describe(ids []string, batch []transport.Outgoing) string {
	var b strings.Builder
	b.WriteString("[")
	for i, id := range ids {
		if i > 0 {
			b.WriteString(" ")
		}
		var n int
		fmt.Sscanf(id, "k%d", &n)
		fmt.Fprintf(&b, "%s=%q", id, batch[n].RoutingKey)
	}
	b.WriteString("]")
	return b.String()
}

// newRand returns the generator of the randomized subtests.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x636f6e666f726d)) }

var (
	patternWords = []string{"a", "b", "", "*", "#", "#", "*"}
	keyWords     = []string{"a", "b", "", "c"}
)

// randomPatterns returns n distinct patterns of up to four words.
func randomPatterns(rng *rand.Rand, n int) []string {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		ws := make([]string, rng.IntN(5))
		for i := range ws {
			ws[i] = patternWords[rng.IntN(len(patternWords))]
		}
		p := strings.Join(ws, ".")
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// randomKey returns a key of up to five words.
func randomKey(rng *rand.Rand) string {
	ws := make([]string, rng.IntN(6))
	for i := range ws {
		ws[i] = keyWords[rng.IntN(len(keyWords))]
	}
	return strings.Join(ws, ".")
}

// keyFor returns a key that pattern matches, so that the random batch is
// not mostly unroutable.
func keyFor(rng *rand.Rand, pattern string) string {
	var ws []string
	for _, w := range words(pattern) {
		switch w {
		case "*":
			ws = append(ws, keyWords[rng.IntN(len(keyWords))])
		case "#":
			for range rng.IntN(3) {
				ws = append(ws, keyWords[rng.IntN(len(keyWords))])
			}
		default:
			ws = append(ws, w)
		}
	}
	return strings.Join(ws, ".")
}

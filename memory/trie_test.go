package memory

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// refMatch is RabbitMQ's topic matching written as directly as possible, to
// check the trie against.
func refMatch(pattern, key []string) bool {
	if len(pattern) == 0 {
		return len(key) == 0
	}
	switch pattern[0] {
	case "#":
		for i := 0; i <= len(key); i++ {
			if refMatch(pattern[1:], key[i:]) {
				return true
			}
		}
		return false
	case "*":
		return len(key) > 0 && refMatch(pattern[1:], key[1:])
	default:
		return len(key) > 0 && key[0] == pattern[0] && refMatch(pattern[1:], key[1:])
	}
}

func words(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

func randomName(r *rand.Rand, alphabet []string, maxWords int) string {
	n := r.IntN(maxWords + 1)
	if n == 0 {
		return ""
	}
	w := make([]string, n)
	for i := range w {
		w[i] = alphabet[r.IntN(len(alphabet))]
	}
	return strings.Join(w, ".")
}

func TestTrieAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	patternWords := []string{"a", "b", "", "*", "#", "#", "*"}
	keyWords := []string{"a", "b", "", "c"}
	for round := range 300 {
		trie := newTopicTrie()
		queues := make([]*queue, 8)
		for i := range queues {
			queues[i] = &queue{id: uint64(i)}
		}
		type bindingRef struct {
			pattern string
			q       *queue
		}
		var bindings []bindingRef
		for range 1 + r.IntN(30) {
			br := bindingRef{randomName(r, patternWords, 5), queues[r.IntN(len(queues))]}
			trie.add(br.pattern, br.q)
			bindings = append(bindings, br)
		}
		// Remove some bindings again, to exercise pruning.
		for range r.IntN(len(bindings) + 1) {
			if len(bindings) == 0 {
				break
			}
			i := r.IntN(len(bindings))
			br := bindings[i]
			trie.remove(br.pattern, br.q)
			bindings = slices.DeleteFunc(bindings, func(x bindingRef) bool { return x == br })
		}
		for range 50 {
			key := randomName(r, keyWords, 6)
			want := map[*queue]bool{}
			for _, br := range bindings {
				if refMatch(words(br.pattern), words(key)) {
					want[br.q] = true
				}
			}
			got := map[*queue]bool{}
			rs := &routeSet{epoch: uint64(round)*1000 + 1}
			trie.match(key, rs)
			for _, q := range rs.out {
				if got[q] {
					t.Fatalf("key %q: queue %d reported twice", key, q.id)
				}
				got[q] = true
			}
			for _, q := range queues {
				q.routeMark = 0
			}
			if len(got) != len(want) {
				t.Fatalf("round %d key %q: trie matched %d queues, reference %d (bindings %v)", round, key, len(got), len(want), bindings)
			}
			for q := range want {
				if !got[q] {
					t.Fatalf("round %d key %q: trie missed queue %d (bindings %v)", round, key, q.id, bindings)
				}
			}
		}
	}
}

func TestTriePrunes(t *testing.T) {
	trie := newTopicTrie()
	q := &queue{}
	for _, p := range []string{"a.b.c", "a.*.#", "#", "", "a."} {
		trie.add(p, q)
	}
	for _, p := range []string{"a.b.c", "a.*.#", "#", "", "a."} {
		if !trie.remove(p, q) {
			t.Fatalf("remove %q: not found", p)
		}
	}
	if r := trie.root; len(r.words) != 0 || r.star != nil || r.hash != nil || len(r.queues) != 0 {
		t.Fatalf("trie not empty after removing every binding: %+v", r)
	}
}

// TestTrieManyHashes checks that patterns full of "#" against the longest
// keys stay cheap: without the visited marks this takes longer than any
// test timeout.
func TestTrieManyHashes(t *testing.T) {
	trie := newTopicTrie()
	q := &queue{}
	trie.add(strings.Repeat("#.a.", 20)+"#.b", q)
	rs := &routeSet{epoch: 1}
	trie.match(strings.Repeat("a.", 127)+"c", rs)
	if len(rs.out) != 0 {
		t.Fatal("matched a key without b")
	}
	trie.match(strings.Repeat("a.", 127)+"b", rs)
	if len(rs.out) != 1 {
		t.Fatalf("matched %d times, want once", len(rs.out))
	}
}

func TestDequeAgainstSlice(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var d deque
	var ref []*entry
	for step := range 20000 {
		switch op := r.IntN(10); {
		case op < 4:
			e := &entry{seq: uint64(step)}
			d.pushBack(e)
			ref = append(ref, e)
		case op < 7 && len(ref) > 0:
			if got := d.popFront(); got != ref[0] {
				t.Fatalf("step %d: popped seq %d, want %d", step, got.seq, ref[0].seq)
			}
			ref = ref[1:]
		default:
			i := r.IntN(len(ref) + 1)
			e := &entry{seq: uint64(step)}
			d.insert(i, e)
			ref = slices.Insert(ref, i, e)
		}
		if d.n != len(ref) {
			t.Fatalf("step %d: %d entries, want %d", step, d.n, len(ref))
		}
	}
	for i, e := range ref {
		if d.at(i) != e {
			t.Fatalf("entry %d differs", i)
		}
	}
}

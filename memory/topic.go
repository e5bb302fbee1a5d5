package memory

import (
	"slices"
	"strings"
)

// routeSet collects the queues a message reaches, each once: a queue is in
// the set when its routeMark is the set's epoch.
type routeSet struct {
	epoch uint64
	out   []*queue
}

func (rs *routeSet) add(q *queue) {
	if q.routeMark != rs.epoch {
		q.routeMark = rs.epoch
		rs.out = append(rs.out, q)
	}
}

// maxWords is the most words a routing key or pattern of at most
// transport.MaxNameLength bytes can have: 127 dots separate 128 words.
const maxWords = 128

// topicTrie holds a topic exchange's bindings as a trie of pattern words, so
// that routing costs what the routing key and the matching paths cost, not
// what the number of bindings costs.
type topicTrie struct {
	root  *topicNode
	epoch uint64 // one per match, for the visited marks of the nodes
}

// topicNode is one word of one or more patterns. Literal words, "*" and "#"
// lead to separate children because RabbitMQ gives the wildcards their
// meaning wherever they stand and has no escape.
type topicNode struct {
	parent *topicNode
	word   string
	words  map[string]*topicNode
	star   *topicNode
	hash   *topicNode
	// queues are the queues bound under the pattern that ends here.
	queues []*queue

	// visited marks the positions of the routing key already tried at this
	// node during the match numbered visitEpoch: "#" reaches the same (node,
	// position) along many paths, and without the marks a pattern with
	// several "#" costs a power of the key's length.
	visitEpoch uint64
	visited    [(maxWords + 1 + 63) / 64]uint64
}

func newTopicTrie() *topicTrie { return &topicTrie{root: &topicNode{}} }

// splitWords splits a routing key or pattern into its words by RabbitMQ's
// rules: the empty string has no words, otherwise empty words count. It
// returns the words in buf's backing array when they fit.
func splitWords(s string, buf []string) []string {
	if s == "" {
		return buf[:0]
	}
	words := buf[:0]
	for {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return append(words, s)
		}
		words = append(words, s[:i])
		s = s[i+1:]
	}
}

// add binds q under pattern; it reports whether the binding is new.
func (t *topicTrie) add(pattern string, q *queue) bool {
	var buf [maxWords]string
	n := t.root
	for _, w := range splitWords(pattern, buf[:]) {
		n = n.child(w, true)
	}
	if slices.Contains(n.queues, q) {
		return false
	}
	n.queues = append(n.queues, q)
	return true
}

// remove unbinds q from pattern and prunes the nodes left empty.
func (t *topicTrie) remove(pattern string, q *queue) bool {
	var buf [maxWords]string
	n := t.root
	for _, w := range splitWords(pattern, buf[:]) {
		if n = n.child(w, false); n == nil {
			return false
		}
	}
	i := slices.Index(n.queues, q)
	if i < 0 {
		return false
	}
	n.queues = slices.Delete(n.queues, i, i+1)
	for n.parent != nil && len(n.queues) == 0 && len(n.words) == 0 && n.star == nil && n.hash == nil {
		p := n.parent
		switch {
		case p.star == n:
			p.star = nil
		case p.hash == n:
			p.hash = nil
		default:
			delete(p.words, n.word)
		}
		n = p
	}
	return true
}

func (n *topicNode) child(w string, create bool) *topicNode {
	var c *topicNode
	switch w {
	case "*":
		c = n.star
	case "#":
		c = n.hash
	default:
		c = n.words[w]
	}
	if c != nil || !create {
		return c
	}
	c = &topicNode{parent: n, word: w}
	switch w {
	case "*":
		n.star = c
	case "#":
		n.hash = c
	default:
		if n.words == nil {
			n.words = make(map[string]*topicNode)
		}
		n.words[w] = c
	}
	return c
}

// match adds to rs each queue bound under a pattern that matches key.
func (t *topicTrie) match(key string, rs *routeSet) {
	var buf [16]string // enough for most keys without allocating
	t.epoch++
	t.root.match(t.epoch, splitWords(key, buf[:]), 0, rs)
}

func (n *topicNode) match(epoch uint64, words []string, i int, rs *routeSet) {
	if n.visitEpoch != epoch {
		n.visitEpoch = epoch
		n.visited = [len(n.visited)]uint64{}
	}
	if n.visited[i/64]&(1<<(i%64)) != 0 {
		return
	}
	n.visited[i/64] |= 1 << (i % 64)

	if n.hash != nil {
		// "#" swallows zero or more words.
		for j := i; j <= len(words); j++ {
			n.hash.match(epoch, words, j, rs)
		}
	}
	if i == len(words) {
		for _, q := range n.queues {
			rs.add(q)
		}
		return
	}
	if c := n.words[words[i]]; c != nil {
		c.match(epoch, words, i+1, rs)
	}
	if n.star != nil {
		n.star.match(epoch, words, i+1, rs)
	}
}

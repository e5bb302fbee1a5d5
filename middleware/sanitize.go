package middleware

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/busline/busline/transport"
)

// SanitizedHeader is the header a forwarding stage adds to a copy whose
// header keys it had to rewrite: RabbitMQ delivers a key that is not valid
// UTF-8 (an AMQP field name is any bytes), but no busline transport
// publishes one, so the copy carries it as text instead, with each byte
// that is not part of valid UTF-8 written \xNN. The header's value is an
// array of the rewritten keys' paths as the copy has them ("outer.inner"
// for a key inside a table, "array[2].key" inside an array), in no
// particular order; a copy of a copy appends to it.
const SanitizedHeader = "busline-sanitized-headers"

// sanitizeHeaders rewrites the keys of c (a copy the caller owns) that are
// not valid UTF-8, at any depth, and records them under SanitizedHeader.
// Nested tables and arrays are copied before they are changed.
func sanitizeHeaders(c transport.Headers) {
	var paths []any
	sanitizeTable(c, "", &paths)
	if len(paths) == 0 {
		return
	}
	if prev, ok := c[SanitizedHeader].([]any); ok {
		paths = append(append([]any(nil), prev...), paths...)
	}
	c[SanitizedHeader] = paths
}

// sanitizeTable rewrites the bad keys of t in place (t is the caller's
// copy) and returns whether it changed anything.
func sanitizeTable(t map[string]any, path string, paths *[]any) bool {
	changed := false
	for k, v := range t {
		if nv, ok := sanitizeValue(v, join(path, k), paths); ok {
			t[k] = nv
			changed = true
		}
	}
	for k, v := range t {
		if utf8.ValidString(k) {
			continue
		}
		nk := escapeKey(k, t)
		delete(t, k)
		t[nk] = v
		*paths = append(*paths, join(path, nk))
		changed = true
	}
	return changed
}

// sanitizeValue returns a copy of v with its bad keys rewritten, and true,
// if v holds any; v itself is not changed.
func sanitizeValue(v any, path string, paths *[]any) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		if !needsSanitizing(v) {
			return nil, false
		}
		c := make(map[string]any, len(v))
		for k, e := range v {
			c[k] = e
		}
		sanitizeTable(c, path, paths)
		return c, true
	case []any:
		var c []any
		for i, e := range v {
			ne, ok := sanitizeValue(e, fmt.Sprintf("%s[%d]", path, i), paths)
			if !ok {
				continue
			}
			if c == nil {
				c = append([]any(nil), v...)
			}
			c[i] = ne
		}
		return c, c != nil
	}
	return nil, false
}

func needsSanitizing(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if !utf8.ValidString(k) || needsSanitizing(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if needsSanitizing(e) {
				return true
			}
		}
	}
	return false
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// escapeKey writes k's bytes that are not valid UTF-8 as \xNN, cut to the
// 255 bytes a key may have, and made distinct from the keys of t.
func escapeKey(k string, t map[string]any) string {
	var b strings.Builder
	for i := 0; i < len(k); {
		r, size := utf8.DecodeRuneInString(k[i:])
		if r == utf8.RuneError && size <= 1 {
			fmt.Fprintf(&b, `\x%02x`, k[i])
			i++
			continue
		}
		b.WriteString(k[i : i+size])
		i += size
	}
	base := cut(b.String(), transport.MaxNameLength)
	nk := base
	for n := 2; ; n++ {
		if _, taken := t[nk]; !taken {
			return nk
		}
		suffix := fmt.Sprintf("~%d", n)
		nk = cut(base, transport.MaxNameLength-len(suffix)) + suffix
	}
}

// cut returns s cut to at most max bytes on a rune boundary.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

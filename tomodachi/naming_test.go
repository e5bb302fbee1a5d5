package tomodachi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/busline/busline/tomodachi"
)

func TestRoutingKeys(t *testing.T) {
	for _, c := range []struct{ key, encoded string }{
		{"order.created", "order.created"},
		{"a-b_c *#,;.:<>!\"%&/()[]{}\\=?'^`~+|@$", "a-b_c *#,;.:<>!\"%&/()[]{}\\=?'^`~+|@$"},
		{"café.ü", "caf___c3a9_.___c3bc_"},
		{"tab\tkey", "tab___09_key"},
		{"€", "___e282ac_"},
		{"😀", "___f09f9880_"},
	} {
		if got := tomodachi.EncodeRoutingKey(c.key); got != c.encoded {
			t.Errorf("EncodeRoutingKey(%q) = %q, want %q", c.key, got, c.encoded)
		}
		if got := tomodachi.DecodeRoutingKey(c.encoded); got != c.key {
			t.Errorf("DecodeRoutingKey(%q) = %q, want %q", c.encoded, got, c.key)
		}
	}
}

func TestQueueName(t *testing.T) {
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	const uuid = "6c4a8d3e-5f2b-4c1a-9e7d-0b8f6a2c1d3e"
	if got, want := tomodachi.QueueName("order.created", "on_order", uuid, true, ""), sum("order.created"); got != want {
		t.Errorf("competing: %q, want %q", got, want)
	}
	if got, want := tomodachi.QueueName("order.created", "on_order", uuid, false, "prod-"), "prod-"+sum("order.createdon_order"+uuid); got != want {
		t.Errorf("non-competing: %q, want %q", got, want)
	}
	if got, want := tomodachi.QueueName("café", "f", "", true, ""), sum("caf___c3a9_"); got != want {
		t.Errorf("encoded key: %q, want %q", got, want)
	}
	if s := tomodachi.NewService("shop"); s.Name != "shop" || len(s.UUID) != 36 || s.UUID[14] != '4' {
		t.Errorf("NewService = %+v, want a version 4 uuid", s)
	}
}

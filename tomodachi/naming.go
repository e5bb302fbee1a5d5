package tomodachi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// DefaultExchange is the topic exchange tomodachi services publish and
// subscribe on unless options.amqp.exchange_name says otherwise.
const DefaultExchange = "amq.topic"

// safeRoutingKey matches the characters tomodachi writes into routing keys
// as they are; encodeRoutingKey rewrites any other.
var unsafeRoutingKeyChar = regexp.MustCompile(`[^a-zA-Z0-9_*#,;.:<>!"%&/\(\)\[\]\{\}\\=?'^` + "`" + `~+|@$ -]`)

var encodedRoutingKeyChar = regexp.MustCompile(`___([a-f0-9]{2}|[a-f0-9]{4}|[a-f0-9]{6}|[a-f0-9]{8})_`)

// EncodeRoutingKey writes key as tomodachi's AmqpTransport.encode_routing_key
// does before it publishes or binds: each character outside letters,
// digits and _*#,;.:<>!"%&/()[]{}\=?'^`~+|@$ space and - becomes "___", the
// hexadecimal of its UTF-8 bytes, and "_" ("é" is "___c3a9_").
func EncodeRoutingKey(key string) string {
	return unsafeRoutingKeyChar.ReplaceAllStringFunc(key, func(c string) string {
		return "___" + hex.EncodeToString([]byte(c)) + "_"
	})
}

// DecodeRoutingKey undoes EncodeRoutingKey, as tomodachi's
// decode_routing_key does.
func DecodeRoutingKey(key string) string {
	return encodedRoutingKeyChar.ReplaceAllStringFunc(key, func(m string) string {
		b, err := hex.DecodeString(m[3 : len(m)-1])
		if err != nil {
			return m
		}
		return string(b)
	})
}

// QueueName is the name tomodachi gives the queue of a handler subscribed
// under routingKey (as written in the decorator, without
// options.amqp.routing_key_prefix) when the decorator names none: the
// SHA-256, in hexadecimal, of the encoded routing key for a competing
// handler, and of the encoded routing key, the handler's function name and
// the service instance's uuid for a non-competing one; after
// queueNamePrefix (options.amqp.queue_name_prefix). Use it to find a
// tomodachi service's queue on the broker.
func QueueName(routingKey, funcName, serviceUUID string, competing bool, queueNamePrefix string) string {
	key := EncodeRoutingKey(routingKey)
	if !competing {
		key += funcName + serviceUUID
	}
	sum := sha256.Sum256([]byte(key))
	return queueNamePrefix + hex.EncodeToString(sum[:])
}

// Service is the sender a tomodachi envelope names: a service's name and the
// uuid of its instance.
type Service struct {
	Name string
	UUID string
}

// NewService returns a Service named name with a new random (version 4)
// uuid, as a tomodachi service instance has.
func NewService(name string) Service {
	return Service{Name: name, UUID: newUUID()}
}

// newUUID returns a random version 4 UUID in its canonical form.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return strings.Join([]string{h[:8], h[8:12], h[12:16], h[16:20], h[20:]}, "-")
}

// messageUUID is a new envelope's message_uuid: the sender's uuid, a dot
// and a new uuid.
func (s Service) messageUUID() string {
	return fmt.Sprintf("%s.%s", s.UUID, newUUID())
}

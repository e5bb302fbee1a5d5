package amqp

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/busline/busline/transport"
)

// Options configure a [Transport]. The zero value of every field is the
// documented default, so Options{} gives PikaBus's exchange names, quorum
// queues and 28 delay levels.
type Options struct {
	// DirectExchange and TopicExchange name the two exchanges. Defaults:
	// [transport.DefaultDirectExchange] and [transport.DefaultTopicExchange].
	DirectExchange string
	TopicExchange  string

	// QueueType is the type of queue Declare creates when
	// transport.Queue.Type is empty. Default: [transport.Quorum].
	QueueType transport.QueueType

	// DelayLevels is the number of delay levels for deferred delivery (see
	// the package documentation): the longest delay is 2^DelayLevels-1
	// seconds. Default 28 (about 8.5 years), as NServiceBus; at most 32.
	DelayLevels int
	// DelayPrefix prefixes the names of the delay exchanges and queues.
	// Default "busline-delay".
	DelayPrefix string

	// PublishChannels is the number of channels Dispatch publishes on.
	// Default 1: the messages of every caller share one channel, whose
	// window keeps many confirms in flight; on a small broker more
	// channels only add context switches (measured on 2 cores), on a
	// large one a few more may spread the work over its cores.
	PublishChannels int
	// ConfirmWindow bounds the messages published on one channel and not
	// yet confirmed by the broker. Default 512.
	ConfirmWindow int

	// AckDelay is the longest a consumer's ack waits to be sent together
	// with the acks that follow it, as one basic.ack with multiple set,
	// which saves a socket write per message. Default 5ms; a negative
	// value sends every ack at once. Nacks are always sent at once, and a
	// consumer with a prefetch below 3 sends every ack at once too.
	AckDelay time.Duration

	// Heartbeat is the AMQP heartbeat timeout: the transport proposes it
	// to the broker, which sends a frame at least every half of it, and
	// declares a connection lost when nothing arrived for that long (two
	// missed heartbeats, RabbitMQ's own rule for its clients). It bounds
	// how long a hung node or a silent network holds the transport up.
	// Default 5s, the low end of RabbitMQ's advice: lower values risk
	// false alarms on a busy host; see the README's "Running on a
	// cluster" for the measurements.
	Heartbeat time.Duration
	// DialTimeout bounds the TCP connection, TLS handshake and AMQP
	// handshake of one connection attempt. Default 3s: shorter than
	// Heartbeat, so that a reconnection does not wait longer on a node
	// that accepts connections but does not answer (a hung node) than it
	// took to notice the loss, while a healthy node answers in
	// milliseconds.
	DialTimeout time.Duration
	// ReconnectDelay is the first pause between reconnection attempts; it
	// doubles after each failed round of the URLs up to MaxReconnectDelay.
	// Defaults 100ms and 5s.
	ReconnectDelay    time.Duration
	MaxReconnectDelay time.Duration

	// ClusterURLs are the URLs of the other nodes of the broker's cluster,
	// if it is one (amqp:// or amqps://, as Dial's url). The transport
	// connects to one of Dial's url and these, and fails over to the
	// others when it loses its connection.
	ClusterURLs []string

	// OrderedURLs makes the transport try its URLs (Dial's url, then
	// ClusterURLs) in that order,
	// the first that answers being preferred. By default each transport
	// tries them in an order of its own, chosen at random by Dial, so that
	// the instances of a service spread over the nodes of a cluster
	// (RabbitMQ places a new quorum queue's leader on the node that
	// declares it). Either way, a reconnection tries the other URLs
	// before the one whose connection was just lost.
	OrderedURLs bool

	// TLS configures amqps:// connections. Nil means the system's roots
	// and the URL's host as server name.
	TLS *tls.Config

	// ConnectionName is shown in RabbitMQ's management tools, suffixed with
	// "publish" and "consume" for the transport's two connections.
	// Default "busline".
	ConnectionName string

	// Logger receives connection and consumer events. Nil means silent.
	// No URL in a log line or an error ever contains a password.
	Logger *slog.Logger

	// dial replaces the amqp091 dialer in unit tests.
	dial dialer
	// opTimeout replaces operationTimeout's default in unit tests.
	opTimeout time.Duration
}

const maxDelayLevels = 32

func (o Options) withDefaults() Options {
	if o.DirectExchange == "" {
		o.DirectExchange = transport.DefaultDirectExchange
	}
	if o.TopicExchange == "" {
		o.TopicExchange = transport.DefaultTopicExchange
	}
	if o.QueueType == "" {
		o.QueueType = transport.Quorum
	}
	if o.DelayLevels <= 0 {
		o.DelayLevels = 28
	}
	if o.DelayPrefix == "" {
		o.DelayPrefix = "busline-delay"
	}
	if o.PublishChannels <= 0 {
		o.PublishChannels = 1
	}
	if o.ConfirmWindow <= 0 {
		o.ConfirmWindow = 512
	}
	if o.AckDelay == 0 {
		o.AckDelay = 5 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 3 * time.Second
	}
	if o.ReconnectDelay <= 0 {
		o.ReconnectDelay = 100 * time.Millisecond
	}
	if o.MaxReconnectDelay <= 0 {
		o.MaxReconnectDelay = 5 * time.Second
	}
	if o.MaxReconnectDelay < o.ReconnectDelay {
		o.MaxReconnectDelay = o.ReconnectDelay
	}
	if o.ConnectionName == "" {
		o.ConnectionName = "busline"
	}
	if o.dial == nil {
		o.dial = dialAMQP
	}
	return o
}

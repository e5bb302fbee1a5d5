package amqp

import (
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// The amqp091-go calls the transport makes, behind two small interfaces so
// that unit tests can inject faults (a nack, a return, a channel closed in
// the middle of a batch, a connection lost during Dispatch) without a broker.
// The real implementations are thin wrappers; anything cleverer belongs in
// the transport, where it is tested.

// dialer opens one AMQP connection to url.
type dialer func(url string, cfg amqp091.Config) (amqpConn, error)

// amqpConn is the part of *amqp091.Connection the transport uses.
type amqpConn interface {
	Channel() (amqpChannel, error)
	NotifyClose(chan *amqp091.Error) chan *amqp091.Error
	NotifyBlocked(chan amqp091.Blocking) chan amqp091.Blocking
	Close() error
}

// amqpChannel is the part of *amqp091.Channel the transport uses.
type amqpChannel interface {
	Confirm(noWait bool) error
	Qos(prefetchCount, prefetchSize int, global bool) error
	NotifyPublish(chan amqp091.Confirmation) chan amqp091.Confirmation
	NotifyReturn(chan amqp091.Return) chan amqp091.Return
	NotifyClose(chan *amqp091.Error) chan *amqp091.Error
	NotifyCancel(chan string) chan string
	Publish(exchange, key string, mandatory, immediate bool, msg amqp091.Publishing) error
	Consume(queue, consumer string, autoAck, exclusive, noLocal, noWait bool, args amqp091.Table) (<-chan amqp091.Delivery, error)
	Cancel(consumer string, noWait bool) error
	Get(queue string, autoAck bool) (amqp091.Delivery, bool, error)
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
	ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, args amqp091.Table) error
	ExchangeDeclarePassive(name, kind string, durable, autoDelete, internal, noWait bool, args amqp091.Table) error
	ExchangeBind(destination, key, source string, noWait bool, args amqp091.Table) error
	QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, args amqp091.Table) (amqp091.Queue, error)
	QueueDeclarePassive(name string, durable, autoDelete, exclusive, noWait bool, args amqp091.Table) (amqp091.Queue, error)
	QueueBind(name, key, exchange string, noWait bool, args amqp091.Table) error
	QueueUnbind(name, key, exchange string, args amqp091.Table) error
	QueueDelete(name string, ifUnused, ifEmpty, noWait bool) (int, error)
	Close() error
}

func dialAMQP(url string, cfg amqp091.Config) (amqpConn, error) {
	c, err := amqp091.DialConfig(url, cfg)
	if err != nil {
		return nil, err
	}
	return realConn{c}, nil
}

type realConn struct{ *amqp091.Connection }

func (c realConn) Channel() (amqpChannel, error) {
	ch, err := c.Connection.Channel()
	if err != nil {
		return nil, err
	}
	return ch, nil
}

package main

import (
	amqp091 "github.com/rabbitmq/amqp091-go"
)

func main() {
	c, err := amqp091.Dial("amqp://guest:guest@127.0.0.1:5782/")
	if err != nil {
		panic(err)
	}
	ch, _ := c.Channel()
	if _, err := ch.QueueDeclare("probe-q", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"}); err != nil {
		panic(err)
	}
	c.Close()
}

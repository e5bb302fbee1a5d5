module github.com/busline/busline

go 1.25.0

require (
	github.com/google/uuid v1.6.0
	github.com/rabbitmq/amqp091-go v1.16.0
	go.uber.org/goleak v1.3.0
)

require github.com/stretchr/testify v1.11.0 // indirect

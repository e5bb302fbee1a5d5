module github.com/busline/busline/tomodachi

go 1.25.0

require (
	github.com/busline/busline v0.0.0-00010101000000-000000000000
	github.com/busline/busline/protocodec v0.0.0-00010101000000-000000000000
	github.com/rabbitmq/amqp091-go v1.16.0
	go.uber.org/goleak v1.3.0
	google.golang.org/protobuf v1.36.12
)

require github.com/google/uuid v1.6.0 // indirect

replace (
	github.com/busline/busline => ../
	github.com/busline/busline/protocodec => ../protocodec
)

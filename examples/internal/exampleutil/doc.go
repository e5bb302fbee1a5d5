// Package exampleutil is the start-up code busline's example programs
// share, so that each example shows only its scenario.
//
// # Choosing the broker
//
// [Main] runs an example on a new in-memory broker unless the flag -amqp
// (or the environment variable BUSLINE_AMQP_URL) gives a RabbitMQ URL:
//
//	go run ./examples/tutorials/helloworld
//	go run ./examples/tutorials/helloworld -amqp amqp://guest:guest@localhost:5672/
//
// # Sharing a broker
//
// On RabbitMQ every run of an example gets a prefix of its own for queue
// names and topics ([Env.Prefix], applied by [Env.Options]), so examples
// never see each other's messages, nor those of an earlier run, however
// they ended. When the example returns, the queues its endpoints declared
// are deleted. On the memory broker the prefix is empty.
//
// # Ending
//
// An example runs until its scenario completes, -timeout passes or the
// process is interrupted (SIGINT, SIGTERM), and exits with status 0 only
// if the scenario completed; otherwise it says what went wrong on stderr
// and exits with status 1.
package exampleutil

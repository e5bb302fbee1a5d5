package amqp

// CPUTime is cpuTime for the benchmarks of package amqp_test.
var CPUTime = cpuTime

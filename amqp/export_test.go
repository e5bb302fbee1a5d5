package amqp

// CPUTime is cpuTime for the benchmarks of package amqp_test.
var CPUTime = cpuTime

// AfterTests, if set, runs once every test and benchmark of the binary is
// done: the benchmarks print their summary of ratios from it.
var AfterTests func()

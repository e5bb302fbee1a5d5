package amqp

// AfterTests, if set, runs once every test and benchmark of the binary is
// done: the benchmarks print their summary of ratios from it.
var AfterTests func()

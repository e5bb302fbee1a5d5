package bus_test

import "github.com/busline/busline/internal/cputime"

// cpuTime is the process's CPU time, for the benchmarks' cpu-ns/op.
var cpuTime = cputime.Used

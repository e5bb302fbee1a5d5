// Package cputime measures the CPU time of the process, for the benchmarks
// of several packages: a measure of a benchmark's cost that other processes
// on a shared machine do not inflate the way they inflate its wall-clock
// time.
package cputime

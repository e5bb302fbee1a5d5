package otelbus

// Version is the version of the instrumentation, given to the tracer and
// the meter.
const Version = "0.1.0"

//go:build race

package examples_test

// race is true when the test binary was built with -race: the examples are
// then built with it too.
const race = true

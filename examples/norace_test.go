//go:build !race

package examples_test

const race = false

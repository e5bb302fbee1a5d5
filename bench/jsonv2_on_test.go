//go:build goexperiment.jsonv2

package bench

// jsonv2 is true under GOEXPERIMENT=jsonv2.
const jsonv2 = true

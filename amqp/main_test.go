package amqp

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(afterTests{m})
}

// afterTests runs AfterTests once the tests and benchmarks are done.
type afterTests struct{ *testing.M }

func (m afterTests) Run() int {
	code := m.M.Run()
	if AfterTests != nil {
		AfterTests()
	}
	return code
}

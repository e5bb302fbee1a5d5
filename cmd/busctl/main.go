package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes, documented in the root command's help.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitPartial     = 4
	exitInterrupted = 130
)

// exitError carries an exit code other than 1 with an error.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &codeError{code, err} }

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is busctl with its arguments; it returns the exit code.
func run(args []string) int {
	ctx, stop := interruptContext()
	defer stop()
	cmd := newRoot()
	cmd.SetArgs(singleDashLong(args))
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "busctl:", err)
	var ce *codeError
	switch {
	case errors.As(err, &ce):
		return ce.code
	case ctx.Err() != nil:
		return exitInterrupted
	case isUsage(err):
		return exitUsage
	}
	return exitError
}

// interruptContext is cancelled by the first SIGINT or SIGTERM, which lets
// a bulk operation finish the batch under way; a second one exits at once.
func interruptContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		n := 0
		for range sig {
			n++
			if n == 1 {
				fmt.Fprintln(os.Stderr, "\nbusctl: interrupted; finishing the batch under way (interrupt again to quit at once)")
				cancel()
				continue
			}
			os.Exit(exitInterrupted)
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}

// singleDashLong accepts Go-style single-dash long flags (-amqp URL, as the
// examples take) by rewriting them to their double-dash form.
func singleDashLong(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(a) > 2 {
			name, _, _ := strings.Cut(a[1:], "=")
			if longFlags[name] {
				out[i] = "-" + a
			}
		}
	}
	return out
}

var longFlags = map[string]bool{"amqp": true, "memory": true, "store": true, "output": true, "error-queue": true}

func isUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires ", "invalid argument", "flag needs an argument", "usage:"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

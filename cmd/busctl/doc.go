// Command busctl operates busline services: it shows their queues and the
// messages that failed, groups failures by cause, retries, deletes, exports
// and imports them, sends messages by hand, and serves a web console over
// the same (busctl serve).
//
// # Usage
//
// See busctl --help, and the "Operating" section of busline's README for
// the design: failed messages are moved from the error queue into an
// SQLite store (package internal/store) and browsed there; the console is
// package internal/console.
//
// # Tests
//
// The CLI tests run busctl as a separate process (the test binary, which
// runs busctl's main when BUSCTL_TEST_MAIN=1) against the memory broker and
// the RabbitMQ node of BUSLINE_AMQP_URL; the browser tests of
// internal/console drive the Chromium of BUSLINE_CHROMIUM
// (scripts/chromium.sh) and save a screenshot of the page when a step
// fails, in $BUSCTL_SCREENSHOTS (the temporary directory by default).
package main

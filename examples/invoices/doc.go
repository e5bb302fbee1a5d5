// Package invoices is a small service, the one busline's README tests on
// the in-memory broker: it mails an invoice for each order and, two weeks
// later, a reminder if the order is still unpaid.
//
// # Messages
//
// It handles the command [SendInvoice] on its queue, [Queue], and the
// event [PaymentReceived], to which it subscribes under the topic
// "payments.received". The reminder is a command it defers to itself.
//
// # Testing
//
// invoices_test.go runs the service in a testing/synctest bubble, where
// the two weeks and the retry delays pass on a fake clock in no time.
package invoices

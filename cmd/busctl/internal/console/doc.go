// Package console is busctl's web console: an overview of the queues, the
// failed-message groups and lists with filters, a message's detail, retry
// and delete of one, a selection or a group after a confirmation page, and
// the JSON API behind them (under /api/).
//
// # Security
//
// Pages are rendered by html/template, which escapes every value for its
// context. Every state-changing request (POST) must carry the CSRF token of
// the busctl_csrf cookie (form field csrf, or header X-CSRF-Token; a
// double-submit token) and pass net/http's CrossOriginProtection; an API
// client that authenticates with a bearer token is exempt from the CSRF
// token, as a browser never attaches one on its own (basic auth it does).
// With Options.Token or Options.User set, every request must authenticate:
// Authorization: Bearer TOKEN, basic auth, or the busctl_auth cookie set by
// opening any page once with ?token=TOKEN.
package console

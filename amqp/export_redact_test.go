package amqp

// CheckURLs is checkURLs, for the redaction fuzz target, which must not
// dial the hosts it makes up.
var CheckURLs = checkURLs

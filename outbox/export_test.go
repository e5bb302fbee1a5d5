package outbox

// SetCrash makes o call f at each step of a unit of work (committed,
// dispatched, marked) with the unit's source (the message id, or the
// transaction's own id); an error from f stops the unit there, as a crash
// would.
func SetCrash(o *Outbox, f func(step, source string) error) { o.crash = f }

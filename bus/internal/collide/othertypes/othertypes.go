// Package othertypes holds a message type for the bus tests whose derived
// name, "PlaceOrder", collides with that of the type of the same name in
// bus/internal/othertypes (and in the tests).
package othertypes

// PlaceOrder collides with othertypes.PlaceOrder of bus/internal/othertypes.
type PlaceOrder struct{ Ref string }

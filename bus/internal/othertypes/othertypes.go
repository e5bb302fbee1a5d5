// Package othertypes holds message types for the bus tests whose names
// collide with those of package collide.
package othertypes

// PlaceOrder is a message type named like collide.PlaceOrder after its
// package's last path element.
type PlaceOrder struct{ Ref string }

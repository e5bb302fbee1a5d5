// Package orderspb holds generated protobuf messages for the examples and
// tests of protocodec and tomodachi: an order placed, stock reserved.
package orderspb

//go:generate protoc --go_out=. --go_opt=paths=source_relative orders.proto

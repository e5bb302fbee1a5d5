module github.com/busline/busline/jsoncodec

go 1.25.0

require (
	github.com/busline/busline v0.0.0-00010101000000-000000000000
	github.com/goccy/go-json v0.12.0
	go.uber.org/goleak v1.3.0
)

require github.com/google/uuid v1.6.0 // indirect

replace github.com/busline/busline => ../

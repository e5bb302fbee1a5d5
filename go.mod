module github.com/busline/busline

go 1.25.0

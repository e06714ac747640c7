module github.com/warrenhq/warren

go 1.25.0

require golang.org/x/sys v0.45.0

require (
	github.com/klauspost/compress v1.20.3 // indirect
	golang.org/x/time v0.15.0 // indirect
)

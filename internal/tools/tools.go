//go:build tools

// Package tools pins, in go.mod and go.sum, what the tests build besides
// warren's own packages: cmd/warren's tests build the standalone
// nats-server (the module's main package) as an external NATS, which
// needs automaxprocs. The build tag keeps it out of every build.
package tools

import (
	_ "go.uber.org/automaxprocs/maxprocs"
)

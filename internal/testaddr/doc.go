// Package testaddr gives tests network addresses with a promise attached
// (one that refuses connections, for now). It imports nothing of warren,
// so every package's tests can use it, engine's included. It is internal:
// only warren's own tests use it.
package testaddr

//go:build !(linux || darwin || freebsd)

package upstream

// engineLoops: only the portable engine runs here, where every connection
// has its own goroutine and Conn.Loop is 0 for all: no per-loop free lists.
const engineLoops = false

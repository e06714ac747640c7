//go:build linux || darwin || freebsd

package upstream

// engineLoops: the engine runs event loops here (unless Config.Portable),
// so a loop index names one goroutine's connections and a free list per
// loop is touched by that loop alone.
const engineLoops = true

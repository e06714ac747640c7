package benchutil

import (
	"encoding/json"
	"os"
	"runtime"
)

// MemFigures are the Go runtime's memory figures a benchmark reports beside
// the RSS it measures from outside.
type MemFigures struct {
	HeapAlloc    uint64 `json:"heap_alloc"`    // live and not yet swept objects
	HeapInuse    uint64 `json:"heap_inuse"`    // spans holding objects
	HeapIdle     uint64 `json:"heap_idle"`     // spans holding none
	HeapReleased uint64 `json:"heap_released"` // idle spans given back to the OS
	StackInuse   uint64 `json:"stack_inuse"`   // goroutine stacks
	Sys          uint64 `json:"sys"`           // everything the runtime mapped
	NextGC       uint64 `json:"next_gc"`       // heap goal
	NumGC        uint32 `json:"num_gc"`
	Goroutines   int    `json:"goroutines"`
}

// ReadMem returns this process's MemFigures. It stops the world briefly.
func ReadMem() MemFigures {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return MemFigures{
		HeapAlloc: m.HeapAlloc, HeapInuse: m.HeapInuse, HeapIdle: m.HeapIdle,
		HeapReleased: m.HeapReleased, StackInuse: m.StackInuse, Sys: m.Sys,
		NextGC: m.NextGC, NumGC: m.NumGC, Goroutines: runtime.NumGoroutine(),
	}
}

// PrintMem writes "MEMSTATS {json}" and a newline to stderr, the line the
// benchmark scripts look for after sending SIGUSR1.
func PrintMem() {
	b, _ := json.Marshal(ReadMem())
	os.Stderr.Write(append(append([]byte("MEMSTATS "), b...), '\n'))
}

package admin

import "runtime/metrics"

// goMemoryBytes returns all memory mapped by the Go runtime (what
// MemStats.Sys reports), read without stopping the world.
func goMemoryBytes() uint64 { return readUint64Metric("/memory/classes/total:bytes") }

// readUint64Metric reads one runtime/metrics value, 0 if unsupported.
func readUint64Metric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

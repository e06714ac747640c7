package admin

import (
	"runtime/metrics"

	"github.com/warrenhq/warren/internal/procstat"
)

// residentBytes returns the process's resident set size.
func residentBytes() uint64 { return procstat.RSS() }

// readUint64Metric reads one runtime/metrics value, 0 if unsupported.
func readUint64Metric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

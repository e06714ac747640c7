//go:build !linux

package procstat

func residentPages() (uint64, bool) { return 0, false }

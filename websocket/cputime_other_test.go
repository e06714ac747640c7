//go:build !unix

package websocket

import "time"

// processCPU is unknown here; benchmarks then report no CPU figure.
func processCPU() time.Duration { return 0 }

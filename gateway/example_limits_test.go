package gateway_test

import (
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
)

// ExampleDeviceLimits limits each device to 5 telemetry messages a second
// with bursts of 50 (what a device sends after being offline), keyed by
// device id so reconnecting does not reset it; a device refused more than
// 10 × 5 messages a second for 10 s is closed (reason rate_limited). The
// same settings are warren serve's -device-rate 5 -device-burst 50.
func ExampleDeviceLimits() {
	var eng *engine.Engine // a started engine
	cfg := gateway.Config{
		Auth: gateway.NewHMACAuth([]byte("a-secret-of-at-least-32-bytes-long")),
		DeviceLimits: gateway.DeviceLimits{
			Rate:        5,
			Burst:       50,
			MaxKeys:     100_000,
			FloodFactor: 10,
			FloodWindow: 10 * time.Second,
		},
	}
	if eng == nil {
		return // this example only shows the configuration
	}
	g, err := gateway.New(eng, cfg)
	if err != nil {
		return
	}
	defer g.Close()
}

package main

import (
	"flag"
	"fmt"

	"github.com/warrenhq/warren/gateway"
)

// deviceLimitFlags registers -device-rate, -device-burst,
// -device-bytes-rate, -device-bytes-burst, -device-limit-keys, -device-flood-factor and -device-flood-window.
func deviceLimitFlags(fs *flag.FlagSet, l *gateway.DeviceLimits) {
	fs.Float64Var(&l.Rate, "device-rate", gateway.DefaultDeviceRate, "telemetry messages a second each device may publish, WebSocket and MQTT, by device id (a reconnect does not reset it); over it messages are dropped and counted (rate_limited), a WebSocket device told once per wait; 0: no limit (see docs/gateway.md)")
	fs.IntVar(&l.Burst, "device-burst", 0, "-device-rate: messages a quiet device may send at once (0: twice -device-rate)")
	fs.Float64Var(&l.BytesRate, "device-bytes-rate", 0, "-device-rate: also limit each device's telemetry payload bytes a second (0: no byte limit)")
	fs.IntVar(&l.BytesBurst, "device-bytes-burst", 0, "-device-bytes-rate: the byte bucket's depth, the most a message is charged (0: twice the rate, at least 64 KiB)")
	fs.IntVar(&l.MaxKeys, "device-limit-keys", gateway.DefaultDeviceLimitKeys, "-device-rate: devices whose buckets are held at once; idle ones are evicted first, and a device finding the table full of busy ones is let through (counted)")
	fs.Float64Var(&l.FloodFactor, "device-flood-factor", gateway.DefaultDeviceFlood, "-device-rate: a device refused more than this many times its rate, sustained over -device-flood-window, is closed (rate_limited); negative: never close")
	fs.DurationVar(&l.FloodWindow, "device-flood-window", gateway.DefaultDeviceFloodAfter, "-device-rate: see -device-flood-factor")
}

// checkDeviceLimits refuses a byte limit without a message rate (it would
// be ignored).
func checkDeviceLimits(l *gateway.DeviceLimits) error {
	if l.BytesRate > 0 && !(l.Rate > 0) {
		return fmt.Errorf("-device-bytes-rate needs -device-rate")
	}
	return nil
}

// Package gateway is warren's device gateway: the hub behind `warren serve`
// that admits devices over WebSocket and MQTT, authenticates each one as a
// device identity (a JWT whose subject is the device id, signed with an
// HMAC secret or checked against a public key), and keeps every connected
// device registered, reachable for commands and metered for telemetry, on
// one node or on several joined through NATS.
//
// Config.DeviceLimits bounds the telemetry each device may publish, by
// device id whatever its connection (see DeviceLimits): the excess is
// dropped and counted, a WebSocket device is told, and a device that keeps
// flooding is closed.
package gateway

package gateway

import (
	"hash/maphash"
	"math"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// ReasonRateLimited closes a device that kept publishing telemetry far
// past its DeviceLimits (see DeviceLimits.FloodFactor); it is also the
// code of the error frame a WebSocket device gets when a message is
// refused, and the reason label of the dropped messages.
const ReasonRateLimited = "rate_limited"

// DeviceLimits limits the telemetry each device may publish, keyed by
// device id (not by connection), so reconnecting does not refill a
// device's bucket. The buckets are the Hub's, one process's: a device that
// reconnects to another node (or prefork worker) starts there afresh. The
// zero value limits nothing.
//
// A message over the limit is dropped and counted
// (warren_gateway_telemetry_dropped_total{reason="rate_limited"}); a
// WebSocket device is told with an error frame
// {"type":"error","code":"rate_limited","retry_after_ms":N} at most once
// per token interval (1/Rate), however many messages it loses meanwhile
// and whether or not it reconnects; an MQTT device's message is dropped (its PUBACK still says
// success: the broker's publish hook has no refusal code, see the
// package docs). The refusals themselves go through a second bucket per
// device of rate FloodFactor × Rate and depth FloodFactor × Rate ×
// FloodWindow: a device refused more than that is closed with
// ReasonRateLimited. A device publishing at twice FloodFactor times its
// rate is closed after about FloodWindow, a faster one sooner; a device
// merely over its rate only loses the excess.
type DeviceLimits struct {
	// Rate is each device's sustained telemetry rate in messages per
	// second. Zero (the default) turns the limits off.
	Rate float64
	// Burst is the messages a quiet device may send at once. Zero means
	// twice Rate (at least 1).
	Burst int
	// BytesRate, when positive, also limits each device's telemetry bytes
	// a second (payload bytes), with a bucket of BytesBurst bytes (zero:
	// twice BytesRate, at least 64 KiB). A message bigger than the burst
	// is charged the whole burst: it passes only when the bucket is full.
	// It applies only with Rate (a message refused for its bytes has
	// still taken its message token), and its refusals count, notify and
	// close like the rate's.
	BytesRate  float64
	BytesBurst int
	// MaxKeys bounds the devices whose buckets are held at once; idle
	// ones (bucket full again) are evicted first. A device that finds
	// the table full of busy devices is let through and counted
	// (warren_gateway_device_limit_table_full_total): an unknown device
	// is not refused because others are busy.
	// Zero means 1,048,576.
	MaxKeys int
	// FloodFactor and FloodWindow say when a device is closed for
	// flooding (see above). Zero means 10 and 10 s; a negative
	// FloodFactor never closes.
	FloodFactor float64
	FloodWindow time.Duration
}

// Default DeviceLimits values. DefaultDeviceRate is warren serve's
// -device-rate default, MQTT's own per-connection PUBLISH rate
// (mqtt.DefaultPublishRate), so that a WebSocket device is bounded as an
// MQTT one is; DeviceLimits' zero value still limits nothing.
const (
	DefaultDeviceRate       = 1000
	DefaultDeviceLimitKeys  = 1 << 20
	DefaultDeviceFlood      = 10
	DefaultDeviceFloodAfter = 10 * time.Second
)

// limShards spreads the per-device buckets over independent limiters, so
// event loops checking different devices rarely share a mutex.
const limShards = 32

// deviceLimiter is DeviceLimits at work: per shard a KeyedLimiter for the
// messages and one for the refusals (the flood detector).
type deviceLimiter struct {
	seed       maphash.Seed
	bytesBurst int // the bytes bucket's depth, the most one message is charged
	shards     [limShards]limShard
}

type limShard struct {
	msgs   *upstream.KeyedLimiter[string]
	notice *upstream.KeyedLimiter[string] // one rate_limited notice per token interval
	flood  *upstream.KeyedLimiter[string] // nil: never close
	bytes  *upstream.KeyedLimiter[string] // nil: no BytesRate
	_      [32]byte
}

// newDeviceLimiter returns the limiter of cfg, or nil when cfg is off.
func newDeviceLimiter(cfg DeviceLimits) *deviceLimiter {
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) {
		return nil
	}
	if cfg.Burst <= 0 {
		cfg.Burst = int(max(1, min(math.Ceil(2*cfg.Rate), math.MaxInt32)))
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultDeviceLimitKeys
	}
	if cfg.FloodFactor == 0 {
		cfg.FloodFactor = DefaultDeviceFlood
	}
	if cfg.FloodWindow <= 0 {
		cfg.FloodWindow = DefaultDeviceFloodAfter
	}
	bytesOn := cfg.BytesRate > 0 && !math.IsInf(cfg.BytesRate, 0)
	if bytesOn && cfg.BytesBurst <= 0 {
		cfg.BytesBurst = int(max(64<<10, min(math.Ceil(2*cfg.BytesRate), math.MaxInt32)))
	}
	perShard := max(1, (cfg.MaxKeys+limShards-1)/limShards)
	l := &deviceLimiter{seed: maphash.MakeSeed(), bytesBurst: cfg.BytesBurst}
	for i := range l.shards {
		l.shards[i].msgs = upstream.NewKeyedLimiter[string](upstream.KeyedConfig{
			Rate: cfg.Rate, Burst: cfg.Burst, MaxKeys: perShard})
		// Refused messages only: a device is told at most once per
		// token interval (the longest wait of a one-message refusal).
		l.shards[i].notice = upstream.NewKeyedLimiter[string](upstream.KeyedConfig{
			Rate: cfg.Rate, Burst: 1, MaxKeys: perShard, EvictBusy: true})
		if bytesOn {
			l.shards[i].bytes = upstream.NewKeyedLimiter[string](upstream.KeyedConfig{
				Rate: cfg.BytesRate, Burst: cfg.BytesBurst, MaxKeys: perShard})
		}
		if cfg.FloodFactor > 0 {
			fr := cfg.FloodFactor * cfg.Rate
			l.shards[i].flood = upstream.NewKeyedLimiter[string](upstream.KeyedConfig{
				Rate: fr, Burst: int(max(1, min(math.Ceil(fr*cfg.FloodWindow.Seconds()), math.MaxInt32))),
				MaxKeys: perShard, EvictBusy: true})
		}
	}
	return l
}

// limitVerdict is check's answer.
type limitVerdict uint8

const (
	limitPass   limitVerdict = iota // publish it
	limitDrop                       // drop it (over the rate)
	limitNotify                     // drop it and tell the device (once per token interval)
	limitClose                      // drop it and close the device (flooding)
)

// check takes one message of size bytes of device at now. When it
// refuses, wait is how long until the device may publish again.
func (l *deviceLimiter) check(device string, size int, now time.Time) (v limitVerdict, wait time.Duration, tableFull bool) {
	sh := &l.shards[maphash.String(l.seed, device)%limShards]
	r, wait := sh.msgs.CheckWait(device, now, 1)
	if r == upstream.ReasonNone && sh.bytes != nil {
		r, wait = sh.bytes.CheckWait(device, now, min(size, l.bytesBurst))
	}
	switch r {
	case upstream.ReasonNone:
		return limitPass, 0, false
	case upstream.ReasonRateLimited:
	default: // table full of busy devices: let it through, counted
		return limitPass, 0, true
	}
	if sh.flood != nil && sh.flood.Check(device, now, 1) == upstream.ReasonRateLimited {
		return limitClose, wait, false
	}
	if sh.notice.Check(device, now, 1) == upstream.ReasonNone {
		return limitNotify, wait, false
	}
	return limitDrop, wait, false
}

// stats sums the shards' counters.
func (l *deviceLimiter) stats() (keys int, tableFull uint64) {
	for i := range l.shards {
		s := l.shards[i].msgs.Stats()
		keys += s.Keys
		tableFull += s.TableFull
	}
	return keys, tableFull
}

// rateNotifier is a Transport that tells its device its telemetry was
// refused (the WebSocket error frame). MQTT has no such message outside a
// PUBACK.
type rateNotifier interface {
	rateLimited(wait time.Duration)
}

// limitTelemetry applies the hub's DeviceLimits to one message of s and
// reports whether to publish it.
func (h *Hub) limitTelemetry(s *Session, size int, now time.Time) bool {
	v, wait, full := h.lim.check(s.Device, size, now)
	if full {
		h.m.limitTableFull.Add(1)
	}
	if v == limitPass {
		return true
	}
	h.m.rateLimited.Add(1)
	switch v {
	case limitClose:
		// Close is idempotent: messages of the same read that follow
		// change nothing.
		s.t.Close(ReasonRateLimited)
	case limitNotify:
		if n, ok := s.t.(rateNotifier); ok {
			n.rateLimited(wait)
		}
	}
	return false
}

package loadgen

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// telemetryWatch counts the telemetry of one devices run as it arrives on
// NATS (devices.*.telemetry) and records each message's end-to-end
// latency, from the intended send time written in it to its arrival. A
// multi-process run has one, in the parent: the workers' devices all
// write the parent's run id, so one subscriber sees the whole run and
// the workers subscribe to nothing.
type telemetryWatch struct {
	run   string
	nc    *nats.Conn
	ownNC bool
	sub   *nats.Subscription

	received atomic.Int64

	// mu guards lat, the latencies of the current interval, and hops.
	mu  sync.Mutex
	lat Histogram
	// hops splits each latency at the gateway's Warren-Received header
	// (same machine, same clock): hops[0] from when the message was due
	// to the gateway's reading it (the load generator's pacing and
	// write, the kernel, the gateway's loop), hops[1] from there to its
	// arrival here (the gateway's publish, NATS, this subscriber). A
	// message without the header counts in neither.
	hops [2]Histogram
}

// Hop names of DeviceReport.Hops: where telemetry's end-to-end latency
// goes.
const (
	HopToGateway   = "due_to_gateway"
	HopFromGateway = "gateway_to_subscriber"
)

// watchTelemetry subscribes to the telemetry of run on the NATS that dc
// names (its NATSConn, or a connection to its NATS URL). It returns nil
// without an error when dc names none.
func watchTelemetry(dc DeviceConfig, run string) (*telemetryWatch, error) {
	w := &telemetryWatch{run: run}
	switch {
	case dc.NATSConn != nil:
		w.nc = dc.NATSConn
	case dc.NATS != "":
		nc, err := nats.Connect(dc.NATS, nats.Name("warren load"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("loadgen: NATS %s: %w", dc.NATS, err)
		}
		w.nc, w.ownNC = nc, true
	default:
		return nil, nil
	}
	sub, err := w.nc.Subscribe("devices.*.telemetry", w.onTelemetry)
	if err == nil {
		// Hold whatever arrives faster than it is counted rather than
		// drop it: a drop here is the load generator's loss, not the
		// gateway's (and is reported apart).
		err = sub.SetPendingLimits(-1, 1<<30)
	}
	if err == nil {
		err = w.nc.Flush() // the subscription is in place before any device connects
	}
	if err != nil {
		w.sub = sub
		w.close()
		return nil, fmt.Errorf("loadgen: subscribe to telemetry on NATS: %w", err)
	}
	w.sub = sub
	return w, nil
}

// onTelemetry counts a telemetry message of the run and records its
// latency from when it was due. It runs on the subscription's goroutine.
func (w *telemetryWatch) onTelemetry(m *nats.Msg) {
	now := time.Now().UnixNano()
	t, ok := parseTelemetry(m.Data, w.run)
	if !ok {
		return // another run's, or another producer's
	}
	w.received.Add(1)
	var gw int64
	if v := m.Header.Get("Warren-Received"); v != "" {
		if at, err := time.Parse(time.RFC3339Nano, v); err == nil {
			gw = at.UnixNano()
		}
	}
	w.mu.Lock()
	w.lat.Record(time.Duration(now - t))
	if gw != 0 {
		w.hops[0].Record(time.Duration(max(gw-t, 0)))
		w.hops[1].Record(time.Duration(max(now-gw, 0)))
	}
	w.mu.Unlock()
}

// hopReport returns the latency split of the whole run so far, by hop
// name (empty when no message carried the gateway's header).
func (w *telemetryWatch) hopReport() map[string]Summary {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hops[0].Count() == 0 {
		return nil
	}
	return map[string]Summary{HopToGateway: summarize(&w.hops[0]), HopFromGateway: summarize(&w.hops[1])}
}

// take moves the latencies recorded since the last call into h.
func (w *telemetryWatch) take(h *Histogram) {
	w.mu.Lock()
	h.Merge(&w.lat)
	w.lat.Reset()
	w.mu.Unlock()
}

// close ends the subscription, and the connection when it is the
// watch's own, and returns how many messages the subscription dropped.
func (w *telemetryWatch) close() int {
	dropped := 0
	if w.sub != nil {
		dropped, _ = w.sub.Dropped()
		w.sub.Unsubscribe()
	}
	if w.ownNC {
		w.nc.Close()
	}
	return dropped
}

// waitFor waits until the run's telemetry received reaches sent(), for
// at most grace or until stop is closed.
func (w *telemetryWatch) waitFor(sent func() int64, grace time.Duration, stop <-chan struct{}) {
	deadline := time.Now().Add(grace)
	for w.received.Load() < sent() && time.Now().Before(deadline) {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

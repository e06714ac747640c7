package loadgen

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

// refusedBy returns warren_tls_refused_total{bound} of c.
func refusedBy(t *testing.T, c prometheus.Collector, bound string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "warren_tls_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "bound" && l.GetValue() == bound {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestDevicesTLSStorm is bench/tls-storm.sh in miniature: 50 devices
// established over wss:// take commands through the management API while
// 300 other devices (dev-51 …, DeviceConfig.First) dial at once against a
// TLS listener limited to 100 new connections a second. The listener's
// bucket refuses most of them before any TLS work (counted by bound); the
// refused devices retry with jittered backoff (DeviceConfig.Retries) until
// every one is online, and every command to the established devices is
// answered. Without retries, the same storm leaves devices out.
func TestDevicesTLSStorm(t *testing.T) {
	type result struct {
		rep *Report
		err error
	}
	p := newDevPKI(t)
	srvFile := filepath.Join(t.TempDir(), "server.pem")
	os.WriteFile(srvFile, p.issue(t, "gateway", false), 0o600)
	ts, err := tlsx.New(tlsx.Config{CertFile: srvFile, KeyFile: srvFile, Rate: 100, RatePerIP: -1, BanThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", Auth: gateway.NewHMACAuth(devSecret),
		Node: "n1", Bus: gateway.BusConfig{}, Logger: quiet, DataDir: t.TempDir(), TLS: ts, TLSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	url := "wss://" + g.TLSAddr() + "/v1/connect"

	const established, storm = 50, 300
	// The established devices stay through the whole storm, however long
	// a loaded machine makes its ramp: their traffic phase outlasts it,
	// and the test ends it once the storm is over.
	est := Config{URL: url, Conns: established, Duration: 2 * time.Minute, Timeout: 5 * time.Second, Loops: 2,
		Scenario: ScenarioDevices, CAFile: p.caFile,
		Devices: DeviceConfig{JWTSecret: devSecret, CommandRPS: 50, APIURL: "http://" + g.APIAddr(),
			Retries: 10, RetryBackoff: 100 * time.Millisecond}}
	estRep := make(chan result, 1)
	estCtx, estStop := context.WithCancel(context.Background())
	defer estStop()
	go func() {
		rep, err := Run(estCtx, est)
		estRep <- result{rep, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for g.Hub().LocalCount() < established {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d established devices online", g.Hub().LocalCount(), established)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let the listener's bucket fill again, so that the storm's first
	// 100 get in and the next 200 are refused.
	time.Sleep(time.Second)

	before := refusedBy(t, ts.Collector(), tlsx.BoundListener)
	sc := Config{URL: url, Conns: storm, Hold: time.Second, Timeout: 5 * time.Second, Loops: 2,
		Scenario: ScenarioDevices, CAFile: p.caFile,
		Devices: DeviceConfig{JWTSecret: devSecret, First: established, Retries: 30,
			RetryBackoff: 100 * time.Millisecond, RetryBackoffMax: time.Second}}
	stormRep := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rep, err := Run(ctx, sc)
		stormRep <- result{rep, err}
	}()
	// Every device online at once, during the storm run's hold: the
	// established and the storm's, with their own ids.
	deadline = time.Now().Add(90 * time.Second) // the storm's ramp takes 3–15 s; more on a loaded machine
	var peak int64
	for g.Hub().LocalCount() < established+storm && time.Now().Before(deadline) {
		peak = max(peak, g.Hub().LocalCount())
		time.Sleep(20 * time.Millisecond)
	}
	if n := g.Hub().LocalCount(); n != established+storm {
		t.Errorf("%d devices online (at most %d at once), want %d", n, peak, established+storm)
	}
	for _, id := range []string{DeviceID(0), DeviceID(established - 1), DeviceID(established), DeviceID(established + storm - 1)} {
		if g.Hub().Local(id) == nil {
			t.Errorf("%s is not online", id)
		}
	}
	res := <-stormRep
	if res.err != nil {
		t.Fatalf("storm: %v", res.err)
	}
	rep := res.rep
	refused := refusedBy(t, ts.Collector(), tlsx.BoundListener) - before
	if rep.Connects != storm || rep.ConnsFailed != 0 || rep.Devices == nil {
		t.Fatalf("storm: connects %d failed %d errors %v", rep.Connects, rep.ConnsFailed, rep.Errors)
	}
	// Most are refused on a quiet machine (the storm arrives within the
	// bucket's second); a loaded one spreads the dials out and times
	// handshakes out instead.
	if refused == 0 || float64(rep.Devices.ConnectRetries) < refused {
		t.Errorf("storm: %v refused by the listener's bound, %d retries", refused, rep.Devices.ConnectRetries)
	}
	t.Logf("storm: %d online in %.2fs, %v refused by the listener's bound, %d retries, connect p99 %v",
		rep.Connects, rep.RampSeconds, refused, rep.Devices.ConnectRetries, time.Duration(rep.ConnectLatency.P99*1e6))

	estStop()
	res = <-estRep
	if res.err != nil && !errors.Is(res.err, context.Canceled) {
		t.Fatalf("established: %v", res.err)
	}
	er := res.rep
	d := er.Devices
	if er.Connects != established || er.ConnsFailed != 0 || d == nil {
		t.Fatalf("established: connects %d failed %d errors %v", er.Connects, er.ConnsFailed, er.Errors)
	}
	// Every command is answered 200, but those in flight when the test
	// stops the run (canceled: "other"): at most half a second's worth,
	// as a loaded machine stretches the round trips (6 were seen at load 6).
	if other := d.CommandOutcomes["other"]; d.CommandsSent < 200 || d.CommandsUnsent != 0 || float64(other) > est.Devices.CommandRPS/2 ||
		d.CommandOutcomes["200"]+other != d.CommandsSent || d.AcksSent < d.CommandOutcomes["200"] {
		t.Errorf("established: commands sent %d unsent %d outcomes %v acked %d", d.CommandsSent, d.CommandsUnsent,
			d.CommandOutcomes, d.AcksSent)
	}

	// The same storm again (new ids) without retries: the refused devices
	// give up.
	time.Sleep(time.Second)
	sc.Devices.First, sc.Devices.Retries, sc.Conns, sc.Hold = established+storm, 0, 200, 0
	rep = run(t, sc)
	if rep.ConnsFailed == 0 || rep.Connects == 200 || rep.Devices.ConnectRetries != 0 {
		t.Errorf("no retries: connects %d failed %d retries %d", rep.Connects, rep.ConnsFailed, rep.Devices.ConnectRetries)
	}
}

// TestRetryBackoff: each wait lies between half and all of RetryBackoff
// doubled per retry and capped, and the waits of one retry spread out.
func TestRetryBackoff(t *testing.T) {
	d := DeviceConfig{Retries: 5, RetryBackoff: 100 * time.Millisecond, RetryBackoffMax: 500 * time.Millisecond}.withDefaults()
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		3: 400 * time.Millisecond, 4: 500 * time.Millisecond, 9: 500 * time.Millisecond} {
		seen := map[time.Duration]bool{}
		for range 200 {
			w := d.backoff(n)
			if w < want/2 || w > want {
				t.Fatalf("retry %d: waited %v, want within [%v, %v]", n, w, want/2, want)
			}
			seen[w] = true
		}
		if len(seen) < 100 {
			t.Errorf("retry %d: %d distinct waits of 200: no jitter", n, len(seen))
		}
	}
	// The ramp's bound covers every retry at its longest.
	if got, want := d.retryBound(time.Second), (100+200+400+500+500)*time.Millisecond+5*time.Second; got != want {
		t.Errorf("retryBound %v, want %v", got, want)
	}
	if z := (DeviceConfig{}).withDefaults(); z.Retries != 0 || z.RetryBackoff != time.Second || z.RetryBackoffMax != 30*time.Second ||
		z.retryBound(time.Second) != 0 {
		t.Errorf("zero config: %+v", z)
	}
}

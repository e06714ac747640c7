package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/testutil"
)

var devSecret = []byte("0123456789abcdef0123456789abcdef")

// startGateway starts a gateway node on its own engine with an embedded,
// in-process NATS server, and returns it with a NATS connection to that
// server.
func startGateway(t *testing.T, apiToken string) (*gateway.Gateway, *nats.Conn) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", APIToken: apiToken,
		Auth: gateway.NewHMACAuth(devSecret), Node: "n1", Bus: gateway.BusConfig{}, Logger: quiet,
		DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	nc, err := nats.Connect("", nats.InProcessServer(g.Bus().Embedded()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return g, nc
}

func deviceConfig(g *gateway.Gateway) Config {
	return Config{URL: "ws://" + g.DeviceAddr() + "/v1/connect", Conns: 50, Duration: time.Second, RPS: 200,
		Timeout: 5 * time.Second, Loops: 2, Scenario: ScenarioDevices,
		Devices: DeviceConfig{JWTSecret: devSecret, Grace: 5 * time.Second}}
}

// TestDevicesScenario runs 50 devices against an in-process gateway:
// telemetry at 200/s for a second, watched on NATS, and 20 commands a
// second through the management API.
func TestDevicesScenario(t *testing.T) {
	g, nc := startGateway(t, "api-secret")
	cfg := deviceConfig(g)
	cfg.Devices.NATSConn = nc
	cfg.Devices.CommandRPS = 20
	cfg.Devices.APIURL = "http://" + g.APIAddr()
	cfg.Devices.APIToken = "api-secret"
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep := run(t, cfg)

	d := rep.Devices
	if d == nil {
		t.Fatal("no device report")
	}
	if rep.Connects != 50 || rep.ConnsFailed != 0 || rep.TotalErrors() != 0 || rep.ConnectRate <= 0 {
		t.Fatalf("connects %d failed %d rate %.0f errors %v", rep.Connects, rep.ConnsFailed, rep.ConnectRate,
			rep.Errors)
	}
	// 200/s for 1 s is 200 frames; the schedule's last one falls due
	// just before the end.
	if d.TelemetrySent < 190 || d.TelemetrySent > 200 {
		t.Errorf("telemetry sent %d, want about 200", d.TelemetrySent)
	}
	if !d.NATS || d.TelemetryReceived != d.TelemetrySent || d.TelemetryLost != 0 {
		t.Errorf("telemetry: sent %d received %d lost %d", d.TelemetrySent, d.TelemetryReceived, d.TelemetryLost)
	}
	if d.E2ELatency.Count != uint64(d.TelemetryReceived) || d.E2ELatency.P50 <= 0 ||
		d.E2ELatency.P999 > d.E2ELatency.Max || rep.Latency != d.E2ELatency {
		t.Errorf("e2e latency %+v (report %+v)", d.E2ELatency, rep.Latency)
	}
	// The split at the gateway's Warren-Received header: every message in
	// both hops, each hop no longer than the whole (within the histogram's
	// rounding).
	to, from := d.Hops[HopToGateway], d.Hops[HopFromGateway]
	if to.Count != d.E2ELatency.Count || from.Count != d.E2ELatency.Count ||
		to.P50 > d.E2ELatency.Max || from.P50 > d.E2ELatency.Max {
		t.Errorf("hops %+v, e2e %+v", d.Hops, d.E2ELatency)
	}
	if d.CommandsSent < 15 || d.CommandsUnsent != 0 || d.CommandOutcomes["200"] != d.CommandsSent ||
		d.CommandFrames != d.CommandsSent || d.AcksSent != d.CommandsSent || d.GatewayErrors != 0 {
		t.Errorf("commands sent %d unsent %d outcomes %v, devices got %d acked %d, gateway errors %d",
			d.CommandsSent, d.CommandsUnsent, d.CommandOutcomes, d.CommandFrames, d.AcksSent, d.GatewayErrors)
	}
	if d.CommandLatency.Count != uint64(d.CommandsSent) || d.CommandLatency.P50 <= 0 {
		t.Errorf("command latency %+v", d.CommandLatency)
	}
	// Every command answered 200 is split at its arrival at the device.
	if to, back := d.CommandHops[HopToDevice], d.CommandHops[HopFromDevice]; to.Count != uint64(d.CommandOutcomes["200"]) ||
		back.Count != to.Count || to.P50 > d.CommandLatency.Max || back.P50 > d.CommandLatency.Max {
		t.Errorf("command hops %+v, round trip %+v", d.CommandHops, d.CommandLatency)
	}
	if g.Hub().Pending() != 0 {
		t.Errorf("%d commands still pending at the gateway", g.Hub().Pending())
	}

	var sum strings.Builder
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"devices, telemetry open-loop at 200/s, commands at 20/s", "received on NATS",
		"e2e latency", "command rtt", "200 " + count(float64(d.CommandsSent))} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, &sum)
		}
	}
	t.Logf("summary:\n%s", &sum)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Devices == nil ||
		back.Devices.TelemetryReceived != d.TelemetryReceived || back.Devices.CommandHist.Count() != uint64(d.CommandsSent) {
		t.Fatalf("JSON round trip: %v %s", err, b)
	}
	if !strings.Contains(progress.String(), "traffic") {
		t.Errorf("progress: %q", &progress)
	}
}

// TestDevicesTokenInQueryWithoutNATS connects with ?token= and measures
// nothing on NATS.
func TestDevicesTokenInQueryWithoutNATS(t *testing.T) {
	g, _ := startGateway(t, "")
	cfg := deviceConfig(g)
	cfg.Conns, cfg.Duration, cfg.RPS = 5, 200*time.Millisecond, 100
	cfg.Devices.TokenInQuery = true
	rep := run(t, cfg)
	d := rep.Devices
	if rep.Connects != 5 || rep.TotalErrors() != 0 || d.NATS || d.TelemetrySent == 0 ||
		rep.Requests != d.TelemetrySent || d.TelemetryReceived != 0 || rep.Latency.Count != 0 {
		t.Fatalf("connects %d errors %v nats %v sent %d requests %d received %d", rep.Connects, rep.Errors, d.NATS,
			d.TelemetrySent, rep.Requests, d.TelemetryReceived)
	}
}

// TestDevicesWrongSecret counts devices refused with 401 as bad statuses.
func TestDevicesWrongSecret(t *testing.T) {
	g, _ := startGateway(t, "")
	cfg := deviceConfig(g)
	cfg.Conns, cfg.Duration = 4, 100*time.Millisecond
	cfg.Devices.JWTSecret = []byte("another secret, at least 32 bytes long")
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connects != 0 || rep.ConnsFailed != 4 || rep.Errors["bad_status"] != 4 {
		t.Fatalf("connects %d failed %d errors %v", rep.Connects, rep.ConnsFailed, rep.Errors)
	}
}

// firstTelemetry returns a channel that gets a value when telemetry
// reaches the bus (at most one waits), until the test ends.
func firstTelemetry(t *testing.T, nc *nats.Conn) <-chan struct{} {
	t.Helper()
	telemetry := make(chan struct{}, 1)
	sub, err := nc.Subscribe("devices.*.telemetry", func(*nats.Msg) {
		select {
		case telemetry <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return telemetry
}

// TestDevicesGatewayShutdown drains the gateway under the devices: each
// echoes the 1001 goodbye, which is counted by code and is no error, and
// tries to reconnect.
func TestDevicesGatewayShutdown(t *testing.T) {
	g, nc := startGateway(t, "")
	// The drain comes once the traffic has begun: the first telemetry
	// reached the bus.
	telemetry := firstTelemetry(t, nc)
	nc.Flush()
	cfg := deviceConfig(g)
	// Frames due after the drain find no device and are given up a
	// Timeout after they were due. The traffic lasts long enough for the
	// drain to come within it on a loaded machine.
	cfg.Conns, cfg.Duration, cfg.RPS, cfg.Timeout = 10, 3*time.Second, 100, 500*time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(10 * time.Second)
		for g.Hub().LocalCount() < 10 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		select {
		case <-telemetry: // into the traffic
		case <-time.After(10 * time.Second):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	}()
	rep := run(t, cfg)
	<-done
	d := rep.Devices
	if rep.Connects != 10 || d.CloseCodes["1001"] != 10 || d.TelemetrySent == 0 {
		t.Fatalf("connects %d closes %v sent %d", rep.Connects, d.CloseCodes, d.TelemetrySent)
	}
	// A reconnect that the listener accepted just before it closed is
	// closed by the drain without a handshake ("closed").
	for k, n := range rep.Errors {
		if k != "connect_refused" && k != "unsent" && k != "closed" {
			t.Errorf("error %s: %d", k, n)
		}
	}
}

func TestDevicesConfigErrors(t *testing.T) {
	ok := Config{URL: "ws://127.0.0.1:1/v1/connect", Scenario: ScenarioDevices,
		Devices: DeviceConfig{JWTSecret: devSecret}}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want error
	}{
		"no secret":      {func(c *Config) { c.Devices.JWTSecret = nil }, ErrScenario},
		"commands":       {func(c *Config) { c.Devices.CommandRPS = 1 }, ErrScenario},
		"procs":          {func(c *Config) { c.Procs = 2 }, ErrNoWorkerCommand},
		"unknown":        {func(c *Config) { c.Scenario = "robots" }, ErrScenario},
		"http URL":       {func(c *Config) { c.URL = "http://127.0.0.1:1/" }, ErrBadURL},
		"bad API URL":    {func(c *Config) { c.Devices.CommandRPS, c.Devices.APIURL = 1, "127.0.0.1:8081" }, ErrBadURL},
		"NATS down":      {func(c *Config) { c.Devices.NATS = "nats://" + closedPort(t) }, nil},
		"closed NATS cn": {func(c *Config) { c.Devices.NATSConn = closedNATS(t) }, nil},
	} {
		cfg := ok
		tc.edit(&cfg)
		rep, err := Run(context.Background(), cfg)
		if err == nil || rep != nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, %v; want %v", name, rep, err, tc.want)
		}
	}
}

// closedNATS returns a closed NATS connection.
func closedNATS(t *testing.T) *nats.Conn {
	_, nc := startGateway(t, "")
	c, err := nats.Connect("", nats.InProcessServer(nc.Opts.InProcessServer))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return c
}

func TestTelemetryFrame(t *testing.T) {
	const t0 = int64(1_767_225_600_123_456_789)
	b := appendTelemetry(nil, t0, "0a1b2c3d", 41, 7)
	var f struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Type != "telemetry" {
		t.Fatalf("%s: %v", b, err)
	}
	var data map[string]any
	if err := json.Unmarshal(f.Data, &data); err != nil || len(f.Data) != telemetryDataSize || data["dev"] != 42.0 ||
		data["seq"] != 7.0 {
		t.Fatalf("data %s (%d bytes): %v", f.Data, len(f.Data), err)
	}
	if got, ok := parseTelemetry(f.Data, "0a1b2c3d"); !ok || got != t0 {
		t.Fatalf("parse: %d %v", got, ok)
	}
	for _, bad := range []string{`{"t":1,"run":"ffffffff","x":1}`, `{"t":,"run":"0a1b2c3d"}`, `{"t":1}`, `[]`,
		`{"t":1,"run":"0a1b2c3d`, `{"temp":1}`} {
		if _, ok := parseTelemetry([]byte(bad), "0a1b2c3d"); ok {
			t.Errorf("parsed %s", bad)
		}
	}
}

// TestDevConnSize keeps a simulated device small: 100,000 of them should
// cost the load generator little beyond the kernel's sockets.
func TestDevConnSize(t *testing.T) {
	if n := unsafe.Sizeof(devConn{}); n > 160 {
		t.Fatalf("devConn is %d bytes", n)
	}
	t.Logf("devConn %d bytes", unsafe.Sizeof(devConn{}))
}

// TestDevicesProcs runs 40 devices in two worker processes: each worker
// takes its own range of device ids and its share of the telemetry, the
// parent watches NATS for the whole run and sends the commands (or, with
// CommandsInDevices, each worker its share to its own devices), and the
// reports merge, the commands' split at the devices included.
func TestDevicesProcs(t *testing.T) {
	for _, inDevices := range []bool{false, true} {
		t.Run(fmt.Sprintf("CommandsInDevices=%v", inDevices), func(t *testing.T) { testDevicesProcs(t, inDevices) })
	}
}

func testDevicesProcs(t *testing.T, inDevices bool) {
	g, nc := startGateway(t, "api-secret")
	online := map[string]bool{}
	var mu sync.Mutex
	sub, err := nc.Subscribe("devices.*.presence", func(m *nats.Msg) {
		var p struct{ Device, State string }
		if json.Unmarshal(m.Data, &p) == nil && p.State == "online" {
			mu.Lock()
			online[p.Device] = true
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	cfg := deviceConfig(g)
	cfg.Conns, cfg.Procs, cfg.RPS = 40, 2, 200
	cfg.Sources = loopbackSources(t)
	cfg.WorkerCommand = testWorker("1")
	cfg.Devices.NATSConn = nc
	cfg.Devices.CommandRPS = 20
	cfg.Devices.APIURL = "http://" + g.APIAddr()
	cfg.Devices.APIToken = "api-secret"
	cfg.Devices.CommandsInDevices = inDevices
	rep := run(t, cfg)

	d := rep.Devices
	if d == nil {
		t.Fatal("no device report")
	}
	if rep.Procs != 2 || rep.Connects != 40 || rep.ConnsFailed != 0 || rep.TotalErrors() != 0 {
		t.Fatalf("procs %d connects %d failed %d errors %v", rep.Procs, rep.Connects, rep.ConnsFailed, rep.Errors)
	}
	mu.Lock()
	n := len(online)
	for i := range 40 {
		if !online[DeviceID(i)] {
			t.Errorf("%s never came online", DeviceID(i))
		}
	}
	mu.Unlock()
	if n != 40 {
		t.Errorf("%d device ids online, want dev-1 … dev-40", n)
	}
	if d.TelemetrySent < 180 || d.TelemetrySent > 200 {
		t.Errorf("telemetry sent %d, want about 200", d.TelemetrySent)
	}
	if !d.NATS || d.TelemetryReceived != d.TelemetrySent || d.TelemetryLost != 0 || rep.Requests != d.TelemetryReceived {
		t.Errorf("telemetry: sent %d received %d lost %d requests %d", d.TelemetrySent, d.TelemetryReceived,
			d.TelemetryLost, rep.Requests)
	}
	if d.E2ELatency.Count != uint64(d.TelemetryReceived) || d.E2ELatency.P50 <= 0 {
		t.Errorf("e2e latency %+v", d.E2ELatency)
	}
	var sum int64
	for _, s := range rep.Timeline {
		sum += s.Requests
	}
	if sum != d.TelemetryReceived {
		t.Errorf("timeline sums to %d of %d received", sum, d.TelemetryReceived)
	}
	if d.CommandsSent < 15 || d.CommandOutcomes["200"] != d.CommandsSent || d.AcksSent != d.CommandsSent ||
		d.CommandLatency.Count != uint64(d.CommandsSent) {
		t.Errorf("commands sent %d outcomes %v acked %d latency %+v", d.CommandsSent, d.CommandOutcomes,
			d.AcksSent, d.CommandLatency)
	}
	if to, back := d.CommandHops[HopToDevice], d.CommandHops[HopFromDevice]; to.Count != uint64(d.CommandOutcomes["200"]) ||
		back.Count != to.Count || to.P50 <= 0 || back.P50 <= 0 {
		t.Errorf("command hops %+v, round trip %+v", d.CommandHops, d.CommandLatency)
	}
}

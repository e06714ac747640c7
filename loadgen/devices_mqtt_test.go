package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// startMQTTGateway starts a gateway node with its MQTT listener and an
// embedded, in-process NATS server on random ports, and returns it with a
// NATS connection to that server.
func startMQTTGateway(t *testing.T, apiToken string) (*gateway.Gateway, *nats.Conn) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", MQTT: "127.0.0.1:0",
		APIToken: apiToken, Auth: gateway.NewHMACAuth(devSecret), Node: "n1", Bus: gateway.BusConfig{},
		Logger: quiet, DataDir: t.TempDir()})
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

func mqttDeviceConfig(g *gateway.Gateway, nc *nats.Conn) Config {
	return Config{URL: "mqtt://" + g.MQTTAddr(), Conns: 50, Duration: time.Second, RPS: 200,
		Timeout: 5 * time.Second, Loops: 2, Scenario: ScenarioDevices,
		Devices: DeviceConfig{JWTSecret: devSecret, Grace: 5 * time.Second, NATSConn: nc,
			CommandRPS: 20, APIURL: "http://" + g.APIAddr(), APIToken: "api-secret"}}
}

// checkMQTTDevicesReport checks what every MQTT devices run with
// telemetry and commands must have measured: conns devices connected with
// no error, every telemetry message sent arrived on NATS, every command
// was acknowledged.
func checkMQTTDevicesReport(t *testing.T, rep *Report, conns int, minSent int64) {
	t.Helper()
	d := rep.Devices
	if d == nil {
		t.Fatal("no device report")
	}
	if rep.Protocol != "mqtt" || rep.Connects != int64(conns) || rep.ConnsFailed != 0 || rep.TotalErrors() != 0 {
		t.Fatalf("protocol %q connects %d failed %d errors %v", rep.Protocol, rep.Connects, rep.ConnsFailed,
			rep.Errors)
	}
	if d.TelemetrySent < minSent || d.TelemetrySent > 200 {
		t.Errorf("telemetry sent %d, want about 200", d.TelemetrySent)
	}
	if !d.NATS || d.TelemetryReceived != d.TelemetrySent || d.TelemetryLost != 0 || rep.Requests != d.TelemetryReceived {
		t.Errorf("telemetry: sent %d received %d lost %d requests %d", d.TelemetrySent, d.TelemetryReceived,
			d.TelemetryLost, rep.Requests)
	}
	if d.E2ELatency.Count != uint64(d.TelemetryReceived) || d.E2ELatency.P50 <= 0 {
		t.Errorf("e2e latency %+v", d.E2ELatency)
	}
	if d.CommandsSent < 15 || d.CommandsUnsent != 0 || d.CommandOutcomes["200"] != d.CommandsSent ||
		d.CommandFrames != d.CommandsSent || d.AcksSent != d.CommandsSent || d.GatewayErrors != 0 {
		t.Errorf("commands sent %d unsent %d outcomes %v, devices got %d acked %d, gateway errors %d",
			d.CommandsSent, d.CommandsUnsent, d.CommandOutcomes, d.CommandFrames, d.AcksSent, d.GatewayErrors)
	}
	if d.CommandLatency.Count != uint64(d.CommandsSent) {
		t.Errorf("command latency %+v", d.CommandLatency)
	}
}

// TestDevicesMQTT runs 50 MQTT 3.1.1 devices against an in-process
// gateway: telemetry at 200/s for a second watched on NATS, 20 commands a
// second through the management API, and presence online for each.
func TestDevicesMQTT(t *testing.T) {
	g, nc := startMQTTGateway(t, "api-secret")
	online := watchOnline(t, nc)
	rep := run(t, mqttDeviceConfig(g, nc))
	checkMQTTDevicesReport(t, rep, 50, 190)
	if g.Hub().Pending() != 0 {
		t.Errorf("%d commands still pending at the gateway", g.Hub().Pending())
	}
	for i := range 50 {
		if p := online(DeviceID(i)); p != "mqtt" {
			t.Errorf("%s online over %q, want mqtt", DeviceID(i), p)
		}
	}
	var sum strings.Builder
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	t.Logf("summary:\n%s", &sum)
}

// TestDevicesMQTT5QoS1 runs MQTT 5.0 devices publishing telemetry and
// acks at QoS 1 (acks on the commands' Response Topic), with a short
// keep-alive so that pings flow.
func TestDevicesMQTT5QoS1(t *testing.T) {
	g, nc := startMQTTGateway(t, "api-secret")
	cfg := mqttDeviceConfig(g, nc)
	cfg.Conns = 20
	cfg.Hold = 1500 * time.Millisecond
	cfg.Devices.MQTT = MQTTDeviceConfig{Version: 5, QoS: 1, KeepAlive: time.Second}
	rep := run(t, cfg)
	checkMQTTDevicesReport(t, rep, 20, 190)
	// The broker saw the keep-alive pings of the hold, and the telemetry
	// and acks at QoS 1.
	st := g.MQTT().Stats()
	if st.PacketsIn[mqtt.TypePingreq] == 0 ||
		st.PublishesIn[mqtt.QoS1] != uint64(rep.Devices.TelemetrySent+rep.Devices.AcksSent) || st.PublishesIn[0] != 0 {
		t.Errorf("broker: %d PINGREQs, publishes in by QoS %v; telemetry %d acks %d", st.PacketsIn[mqtt.TypePingreq],
			st.PublishesIn, rep.Devices.TelemetrySent, rep.Devices.AcksSent)
	}
}

// TestDevicesMQTTProcs runs 40 MQTT devices in two worker processes, each
// its own range of ids, and merges their reports.
func TestDevicesMQTTProcs(t *testing.T) {
	g, nc := startMQTTGateway(t, "api-secret")
	cfg := mqttDeviceConfig(g, nc)
	cfg.Conns, cfg.Procs = 40, 2
	cfg.WorkerCommand = testWorker("1")
	online := watchOnline(t, nc)
	rep := run(t, cfg)
	if rep.Procs != 2 {
		t.Fatalf("procs %d", rep.Procs)
	}
	checkMQTTDevicesReport(t, rep, 40, 180)
	for i := range 40 {
		if p := online(DeviceID(i)); p != "mqtt" {
			t.Errorf("%s online over %q, want mqtt", DeviceID(i), p)
		}
	}
}

// watchOnline records the devices that come online, from their presence
// on NATS, and returns a function that tells over which protocol.
func watchOnline(t *testing.T, nc *nats.Conn) func(id string) string {
	var mu sync.Mutex
	online := map[string]string{}
	sub, err := nc.Subscribe("devices.*.presence", func(m *nats.Msg) {
		var p struct{ Device, State, Protocol string }
		if json.Unmarshal(m.Data, &p) == nil && p.State == "online" {
			mu.Lock()
			online[p.Device] = p.Protocol
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return func(id string) string {
		mu.Lock()
		defer mu.Unlock()
		return online[id]
	}
}

// TestDevicesMQTTRefused counts devices whose CONNACK refuses them (a
// wrong secret) as bad statuses, and checks the settings it refuses.
func TestDevicesMQTTRefused(t *testing.T) {
	g, _ := startMQTTGateway(t, "")
	cfg := Config{URL: "mqtt://" + g.MQTTAddr(), Conns: 5, Duration: 100 * time.Millisecond, Timeout: 5 * time.Second,
		Scenario: ScenarioDevices, Devices: DeviceConfig{JWTSecret: []byte("not the gateway's secret, not at all")}}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connects != 0 || rep.ConnsFailed != 5 || rep.Errors[KindBadStatus.String()] != 5 {
		t.Fatalf("connects %d failed %d errors %v", rep.Connects, rep.ConnsFailed, rep.Errors)
	}
	for name, mod := range map[string]func(*Config){
		"version": func(c *Config) { c.Devices.MQTT.Version = 3 },
		"qos":     func(c *Config) { c.Devices.MQTT.QoS = 2 },
		"path":    func(c *Config) { c.URL += "/prefix" },
	} {
		c := cfg
		mod(&c)
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrScenario) && !errors.Is(err, ErrBadURL) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestDevicesMQTTSeenByMosquitto checks with an independent client,
// Debian's mosquitto_sub logged in as a service, that the devices'
// telemetry and acks are what the gateway documents: topic
// devices/dev-<n>/telemetry with the data object as payload, and
// {"status":"ok"} on devices/dev-<n>/acks/<command id>.
func TestDevicesMQTTSeenByMosquitto(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto_sub not installed (scripts/test installs mosquitto-clients)")
	}
	g, nc := startMQTTGateway(t, "api-secret")
	tok, err := gateway.IssueToken(devSecret, "observer", gateway.RoleService, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(g.MQTTAddr(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_sub", "-h", host, "-p", port, "-i", "observer", "-u", "observer",
		"-P", tok, "-q", "1", "-v", "-t", "devices/+/telemetry", "-t", "devices/+/acks/+")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The subscription is in place once the observer is online.
	testutil.Eventually(t, 10*time.Second, "mosquitto_sub subscribed",
		func() bool { return g.MQTT().Stats().Subscriptions >= 2 })

	cfg := mqttDeviceConfig(g, nc)
	cfg.Conns, cfg.RPS = 10, 100
	rep := run(t, cfg)
	d := rep.Devices
	if rep.TotalErrors() != 0 || d.TelemetryReceived != d.TelemetrySent || d.AcksSent != d.CommandsSent {
		t.Fatalf("errors %v sent %d received %d acks %d commands %d", rep.Errors, d.TelemetrySent,
			d.TelemetryReceived, d.AcksSent, d.CommandsSent)
	}
	var telemetry, acks int64
	deadline := time.After(10 * time.Second)
	for telemetry < d.TelemetrySent || acks < d.AcksSent {
		var line string
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("mosquitto_sub ended after %d telemetry and %d acks: %s", telemetry, acks, &stderr)
			}
			line = l
		case <-deadline:
			t.Fatalf("mosquitto_sub saw %d of %d telemetry and %d of %d acks", telemetry, d.TelemetrySent, acks,
				d.AcksSent)
		}
		topic, payload, _ := strings.Cut(line, " ")
		levels := strings.Split(topic, "/")
		switch {
		case len(levels) == 3 && levels[2] == "telemetry":
			var m struct {
				T   int64  `json:"t"`
				Run string `json:"run"`
				Dev int    `json:"dev"`
			}
			if err := json.Unmarshal([]byte(payload), &m); err != nil || m.T == 0 || len(payload) != telemetryDataSize ||
				levels[1] != DeviceID(m.Dev-1) {
				t.Fatalf("telemetry %q: %+v %v", line, m, err)
			}
			telemetry++
		case len(levels) == 4 && levels[2] == "acks" && levels[3] != "":
			var a struct {
				Status string `json:"status"`
				Result struct {
					At int64 `json:"at"`
				} `json:"result"`
			}
			if json.Unmarshal([]byte(payload), &a) != nil || a.Status != "ok" || a.Result.At == 0 ||
				!strings.HasPrefix(levels[1], "dev-") {
				t.Fatalf("ack %q", line)
			}
			acks++
		default:
			t.Fatalf("unexpected %q", line)
		}
	}
	t.Logf("mosquitto_sub saw %d telemetry messages and %d acks", telemetry, acks)
}

// TestDevicesMQTTReconnect drains the gateway under 20 held MQTT 5.0
// devices and starts another on the same port: every device gets
// DISCONNECT 139 (server shutting down), retries with jitter while
// nothing listens, and is back on the new gateway within the run.
func TestDevicesMQTTReconnect(t *testing.T) {
	const n = 20
	g1, nc := startMQTTGateway(t, "")
	telemetry := firstTelemetry(t, nc)
	addr := g1.MQTTAddr()
	cfg := Config{URL: "mqtt://" + addr, Conns: n, Duration: time.Minute, RPS: 20, Timeout: 5 * time.Second,
		Loops: 2, Scenario: ScenarioDevices, Devices: DeviceConfig{JWTSecret: devSecret,
			MQTT: MQTTDeviceConfig{Version: 5, Reconnect: 300 * time.Millisecond}}}
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go func() {
		rep, err := Run(runCtx, cfg)
		done <- result{rep, err}
	}()
	select { // the ramp is over and the traffic runs
	case <-telemetry:
	case <-time.After(10 * time.Second):
		t.Fatal("no telemetry from the devices")
	}
	if c := g1.Hub().LocalCount(); c != n {
		t.Fatalf("%d of %d devices on the first gateway", c, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := g1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("drained in %v", time.Since(start))
	time.Sleep(200 * time.Millisecond) // some reconnects find nothing listening
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g2, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "-", MQTT: addr,
		Auth: gateway.NewHMACAuth(devSecret), Node: "n2", Bus: gateway.BusConfig{}, Logger: quiet, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g2.Close)
	back := false
	for deadline := time.Now().Add(10 * time.Second); !back && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		back = g2.Hub().LocalCount() == n
	}
	t.Logf("back after %v", time.Since(start))
	if back {
		// The gateway counts a device before the device has read its
		// CONNACK; a device sends telemetry only after: wait for every
		// device's, so that the report counts each reconnect.
		nc2, err := nats.Connect("", nats.InProcessServer(g2.Bus().Embedded()))
		if err != nil {
			t.Fatal(err)
		}
		defer nc2.Close()
		from := make(chan string, 4*n)
		sub2, err := nc2.Subscribe("devices.*.telemetry", func(m *nats.Msg) {
			select {
			case from <- m.Subject:
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub2.Unsubscribe()
		seen := map[string]bool{}
		for timeout := time.After(10 * time.Second); len(seen) < n; {
			select {
			case s := <-from:
				seen[s] = true
			case <-timeout:
				t.Fatalf("telemetry from %d of %d devices on the second gateway", len(seen), n)
			}
		}
	}
	stopRun() // the traffic would go on for a minute
	r := <-done
	if !back {
		t.Fatalf("%d of %d devices back on the second gateway; report %+v", g2.Hub().LocalCount(), n, r.rep)
	}
	if r.err != nil && !errors.Is(r.err, context.Canceled) {
		t.Fatal(r.err)
	}
	rep := r.rep
	if rep.Connects < 2*n || rep.Devices.CloseCodes["139"] != n {
		t.Fatalf("connects %d (want %d and up), close codes %v, errors %v", rep.Connects, 2*n,
			rep.Devices.CloseCodes, rep.Errors)
	}
	t.Logf("connects %d, close codes %v, errors %v", rep.Connects, rep.Devices.CloseCodes, rep.Errors)
}

// TestDevicesMQTTReconnectWaits: with a reconnect delay, a 5.0 device the
// gateway sends away (DISCONNECT 152, administrative action, the
// listener still open) waits for its delay before it comes back, as after
// any other end of its connection, instead of redialling at once as it
// does without one. The delay is a day, so a device that is back within
// the test redialled at once.
func TestDevicesMQTTReconnectWaits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reconnect time.Duration
		back      bool
	}{{"delay", 24 * time.Hour, false}, {"none", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5
			g, nc := startMQTTGateway(t, "")
			telemetry := firstTelemetry(t, nc)
			cfg := Config{URL: "mqtt://" + g.MQTTAddr(), Conns: n, Duration: time.Minute, RPS: 10,
				Timeout: 5 * time.Second, Loops: 2, Scenario: ScenarioDevices, Devices: DeviceConfig{JWTSecret: devSecret,
					MQTT: MQTTDeviceConfig{Version: 5, Reconnect: tc.reconnect}}}
			type result struct {
				rep *Report
				err error
			}
			done := make(chan result, 1)
			runCtx, stopRun := context.WithCancel(context.Background())
			defer stopRun()
			go func() {
				rep, err := Run(runCtx, cfg)
				done <- result{rep, err}
			}()
			select { // the ramp is over and the traffic runs
			case <-telemetry:
			case <-time.After(10 * time.Second):
				t.Fatal("no telemetry from the devices")
			}
			id := DeviceID(0)
			s := g.Hub().Local(id)
			if s == nil {
				t.Fatalf("%s is not online", id)
			}
			s.Transport().(interface{ Close(string) }).Close("kicked by the test")
			// Gone, then back at once, or not within a second. A device
			// that redials at once may still take seconds on a loaded
			// machine: it is given 10; with a day's delay, one that is
			// back within a second did not wait.
			deadline := time.Now().Add(5 * time.Second)
			for g.Hub().Local(id) == s && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			wait := time.Second
			if tc.back {
				wait = 10 * time.Second
			}
			back := false
			for deadline := time.Now().Add(wait); !back && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				back = g.Hub().Local(id) != nil && g.Hub().Local(id) != s
			}
			online := g.Hub().LocalCount()
			stopRun()
			r := <-done
			if r.err != nil && !errors.Is(r.err, context.Canceled) {
				t.Fatal(r.err)
			}
			if back != tc.back {
				t.Errorf("%s back within %v: %v, want %v (report: connects %d, errors %v)", id, wait, back, tc.back,
					r.rep.Connects, r.rep.Errors)
			}
			if got := r.rep.Devices.CloseCodes["152"]; got != 1 {
				t.Errorf("close codes %v, want one 152", r.rep.Devices.CloseCodes)
			}
			if tc.back && online != n || !tc.back && online != n-1 {
				t.Errorf("%d devices online after the kick", online)
			}
		})
	}
}

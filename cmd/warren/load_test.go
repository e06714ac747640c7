package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/warrenhq/warren/engine"

	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/loadgen"
)

// TestLoadDevices runs warren load -scenario devices against an
// in-process gateway whose embedded NATS server listens on a port, with
// the secret read from the gateway's data directory; in one process, then
// in two worker processes (the secret and the API token reach them on
// their standard input).
func TestLoadDevices(t *testing.T) {
	t.Setenv("WARREN_JWT_SECRET", "")
	t.Setenv("WARREN_API_TOKEN", "api-secret")
	data := t.TempDir()
	secret, _, err := gateway.LoadOrCreateSecret(data)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", APIToken: "api-secret",
		Auth: gateway.NewHMACAuth(secret), Node: "n1", Bus: gateway.BusConfig{Listen: "127.0.0.1:0"},
		Logger: quiet, DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)

	for _, procs := range []string{"1", "2"} {
		t.Run("procs="+procs, func(t *testing.T) { loadDevices(t, g, data, procs) })
	}
}

func loadDevices(t *testing.T, g *gateway.Gateway, data, procs string) {
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	// Which devices came online, from their presence on NATS.
	nc, err := nats.Connect(g.Bus().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	online := map[string]bool{}
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
	nc.Flush()
	var stdout, stderr bytes.Buffer
	code := run([]string{"load", "-scenario", "devices", "-url", "ws://" + g.DeviceAddr() + "/v1/connect",
		"-data", data, "-conns", "10", "-rps", "100", "-duration", "500ms", "-nats", g.Bus().ClientURL(),
		"-commands", "10", "-api", "http://" + g.APIAddr(), "-json", jsonPath, "-quiet", "-procs", procs,
		"-first", "100", "-retries", "3", "-retry-backoff", "50ms"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	d := rep.Devices
	if rep.Mode != "devices" || rep.Connects != 10 || fmt.Sprint(rep.Procs) != procs || d == nil || d.TelemetrySent == 0 ||
		d.TelemetryReceived != d.TelemetrySent || d.CommandsSent == 0 || d.CommandOutcomes["200"] != d.CommandsSent {
		t.Fatalf("report %s", b)
	}
	for _, want := range []string{"received on NATS", "e2e latency", "command rtt"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, &stdout)
		}
	}
	// -first 100: the devices were dev-101 … dev-110, in every process.
	nc.Flush()
	sub.Unsubscribe()
	mu.Lock()
	defer mu.Unlock()
	for i := 101; i <= 110; i++ {
		if !online[fmt.Sprintf("dev-%d", i)] {
			t.Errorf("-first 100: dev-%d never came online", i)
		}
	}
	if len(online) != 10 {
		t.Errorf("-first 100: online %v, want dev-101 … dev-110", online)
	}
}

func TestLoadDevicesUsage(t *testing.T) {
	t.Setenv("WARREN_JWT_SECRET", "")
	empty := t.TempDir()
	for name, args := range map[string][]string{
		"no secret":   {"-scenario", "devices", "-data", empty},
		"no API":      {"-scenario", "devices", "-jwt-secret", "s", "-commands", "5"},
		"no scenario": {"-scenario", "robots"},
	} {
		var stderr bytes.Buffer
		if code := run(append([]string{"load"}, args...), io.Discard, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("%s: exit %d, stderr %q; want 2 with a message", name, code, &stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, gateway.SecretFile)); err == nil {
		t.Error("warren load created a secret")
	}
	// -h lists the scenario's flags and never prints a secret from the
	// environment.
	t.Setenv("WARREN_JWT_SECRET", "top-secret-value")
	var out bytes.Buffer
	if code := run([]string{"load", "-h"}, &out, &out); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, f := range []string{"-scenario", "-jwt-secret", "-nats", "-commands", "-api", "-api-token", "-grace", "-first", "-retries", "-retry-backoff"} {
		if !strings.Contains(out.String(), f+" ") {
			t.Errorf("-h lacks %s", f)
		}
	}
	if strings.Contains(out.String(), "top-secret-value") {
		t.Error("-h printed the secret")
	}
}

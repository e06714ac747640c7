package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	wtest "github.com/warrenhq/warren/internal/testutil"
)

// serveDirAPI serves m's directory's API on an engine of one loop, as the
// prefork parent does.
func serveDirAPI(t *testing.T, m *machine, token string) *API {
	t.Helper()
	e := wtest.StartEngine(t, engine.Config{Loops: 1, Logger: quietLog()})
	a, err := m.dir.ServeAPI(e, APIConfig{Addr: "127.0.0.1:0", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// apiDo sends one API request with the bearer token (none when empty).
func apiDo(t *testing.T, method, addr, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// TestDirectoryAPI: the management API served from a machine's Directory
// (the prefork parent's) with workers that serve none: commands to a
// device on either worker, 404 offline, 504 without an ack, 400 on a bad
// body, 401 without the token; lookups, the paged list and a broadcast
// answered from the directory; the commands counted in the directory's
// metrics.
func TestDirectoryAPI(t *testing.T) {
	m := startMachine(t, "m1")
	w1, w2 := m.worker(t, "m1-1"), m.worker(t, "m1-2")
	const tok = "s3cret"
	a := serveDirAPI(t, m, tok)
	devs := map[string]*device{"a": connect(t, w1, "a"), "b": connect(t, w2, "b"), "c": connect(t, w2, "c")}
	wtest.Eventually(t, 0, "three devices in the directory", func() bool { return m.dir.Len() == 3 })

	for _, id := range []string{"a", "b"} {
		done := make(chan map[string]any, 1)
		go func() { done <- devs[id].answer("ok", `"`+id+`"`) }()
		code, r := apiDo(t, "POST", a.Addr(), "/v1/devices/"+id+"/commands", tok, `{"name":"blink","payload":{"n":1}}`)
		if code != 200 || r["status"] != "ok" || r["result"] != id {
			t.Fatalf("command to %s: %d %v", id, code, r)
		}
		if c := <-done; c["name"] != "blink" {
			t.Fatalf("%s got %v", id, c)
		}
	}
	if code, r := apiDo(t, "POST", a.Addr(), "/v1/devices/nope/commands", tok, `{"name":"blink"}`); code != 404 || r["error"] != "offline" {
		t.Fatalf("command to an offline device: %d %v", code, r)
	}
	if code, r := apiDo(t, "POST", a.Addr(), "/v1/devices/c/commands", tok, `{"name":"slow","timeout":"200ms"}`); code != 504 || r["error"] != "timeout" {
		t.Fatalf("command without an ack: %d %v", code, r)
	}
	devs["c"].read() // the unanswered command
	if code, r := apiDo(t, "POST", a.Addr(), "/v1/devices/a/commands", tok, `{"payload":1}`); code != 400 {
		t.Fatalf("command without a name: %d %v", code, r)
	}
	if code, r := apiDo(t, "POST", a.Addr(), "/v1/devices/a/commands", "", `{"name":"blink"}`); code != 401 || r["error"] != "unauthorized" {
		t.Fatalf("command without the token: %d %v", code, r)
	}
	if code, _ := apiDo(t, "GET", a.Addr(), "/v1/devices", "wrong", ""); code != 401 {
		t.Fatalf("list with a wrong token: %d", code)
	}

	code, d := apiDo(t, "GET", a.Addr(), "/v1/devices/b", tok, "")
	if code != 200 || d["node"] != "m1-2" || d["state"] != "online" || d["protocol"] != "websocket" {
		t.Fatalf("GET b: %d %v", code, d)
	}
	if code, d := apiDo(t, "GET", a.Addr(), "/v1/devices/nope", tok, ""); code != 404 || d["error"] != "unknown" {
		t.Fatalf("GET unknown: %d %v", code, d)
	}
	var got []string
	cursor := ""
	for range 5 {
		code, l := apiDo(t, "GET", a.Addr(), "/v1/devices?state=online&limit=2&cursor="+cursor, tok, "")
		if code != 200 {
			t.Fatalf("list: %d %v", code, l)
		}
		for _, x := range l["devices"].([]any) {
			got = append(got, x.(map[string]any)["device"].(string))
		}
		if cursor, _ = l["next_cursor"].(string); cursor == "" {
			break
		}
	}
	if strings.Join(got, " ") != "a b c" {
		t.Fatalf("list pages: %v, want a b c", got)
	}

	if code, r := apiDo(t, "POST", a.Addr(), "/v1/broadcast", tok, `{"name":"fw","devices":["a","c","gone"]}`); code != 202 || r["sent"] != 2.0 || r["offline"] != 1.0 {
		t.Fatalf("broadcast: %d %v", code, r)
	}
	for _, id := range []string{"a", "c"} {
		if c := devs[id].read(); c["name"] != "fw" {
			t.Fatalf("%s got %v", id, c)
		}
	}

	// The API's commands are the directory's metrics, the prefork parent's.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.dir.Collector(), a.Collector())
	for outcome, want := range map[string]float64{"ok": 2, "offline": 1, "timeout": 1} {
		if got := metricValue(t, reg, "warren_gateway_commands_total", outcome); got != want {
			t.Errorf("directory's commands_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	if got := metricValue(t, reg, "warren_gateway_command_duration_seconds", ""); got != 3 {
		t.Errorf("directory's command_duration_seconds count = %v, want 3 (two acks, one timeout)", got)
	}
	if got := metricValue(t, reg, "warren_gateway_broadcast_total", "sent"); got != 2 {
		t.Errorf("directory's broadcast_total{result=sent} = %v, want 2", got)
	}
}

// metricValue returns the value of the sample of family name whose only
// label has value label (a histogram's: its count).
func metricValue(t *testing.T, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.Metric {
			if len(mt.Label) == 1 && mt.Label[0].GetValue() != label {
				continue
			}
			switch {
			case mt.Counter != nil:
				return mt.Counter.GetValue()
			case mt.Gauge != nil:
				return mt.Gauge.GetValue()
			case mt.Histogram != nil:
				return float64(mt.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

// TestDirectoryAPIOtherMachine: the API of one machine's directory sends
// a command to a device held by a node of another machine on the same
// NATS (here an ordinary node), as `warren serve -procs N -nats URL` does
// across machines: the directory follows the whole cluster's presence.
func TestDirectoryAPIOtherMachine(t *testing.T) {
	m := startMachine(t, "m1")
	m.worker(t, "m1-1")
	a := serveDirAPI(t, m, "")
	e := wtest.StartEngine(t, engine.Config{Logger: quietLog()})
	other, err := New(e, Config{Addr: "127.0.0.1:0", API: "-", Auth: NewHMACAuth(testSecret),
		Node: "m2", Bus: BusConfig{URLs: []string{m.bus.ClientURL()}}, CommandTimeout: 2 * time.Second,
		Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	dev := connect(t, other, "far")
	wtest.Eventually(t, 0, "far in m1's directory", func() bool { return m.dir.Lookup("far") != nil })
	done := make(chan map[string]any, 1)
	go func() { done <- dev.answer("ok", `42`) }()
	if code, r := apiDo(t, "POST", a.Addr(), "/v1/devices/far/commands", "", `{"name":"blink"}`); code != 200 || r["result"] != 42.0 {
		t.Fatalf("command to a device of another machine: %d %v", code, r)
	}
	<-done
	if code, d := apiDo(t, "GET", a.Addr(), "/v1/devices/far", "", ""); code != 200 || d["node"] != "m2" {
		t.Fatalf("GET far: %d %v", code, d)
	}
}

// TestDrainProof: a command's context outlives its request's when the
// engine starts draining, and ends with it when the client goes away.
func TestDrainProof(t *testing.T) {
	req, cancel := context.WithCancelCause(context.Background())
	ctx, stop := drainProof(req)
	cancel(engine.ErrServerClosed)
	time.Sleep(10 * time.Millisecond) // AfterFunc runs on its own goroutine
	if ctx.Err() != nil {
		t.Fatalf("drain ended the command's context: %v", context.Cause(ctx))
	}
	stop()
	if ctx.Err() == nil {
		t.Fatal("stop did not end the context")
	}

	gone := errors.New("client gone")
	req, cancel = context.WithCancelCause(context.Background())
	ctx, stop = drainProof(req)
	defer stop()
	cancel(gone)
	select {
	case <-ctx.Done():
		if !errors.Is(context.Cause(ctx), gone) {
			t.Errorf("cause %v, want %v", context.Cause(ctx), gone)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client going away did not end the command's context")
	}
}

package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
	"github.com/warrenhq/warren/upstream"
)

// panelsRig is an admin server over an engine running an upstream cluster
// (a slow and a fast net/http backend, hedging on, its admin routes) and
// an MQTT broker with real mosquitto clients: what the dashboard's
// upstream and MQTT panels read.
type panelsRig struct {
	s      *Server
	cl     *upstream.Cluster
	broker *mqtt.Server
	mqAddr string
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startPanelsRig(t *testing.T) *panelsRig {
	t.Helper()
	for _, bin := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("no %s (scripts/test installs mosquitto-clients): %v", bin, err)
		}
	}
	e := testutil.StartEngine(t, engine.Config{Loops: 2, Logger: quietLogger()})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(slow.Close)
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(503)
		}
		io.WriteString(w, "fast")
	}))
	t.Cleanup(fast.Close)
	cl, err := upstream.NewCluster(e, upstream.ClusterConfig{Name: "legacy", Hosts: []string{slow.URL, fast.URL},
		Balancer: upstream.BalanceRoundRobin, HedgeDelay: 20 * time.Millisecond, OutlierOff: true,
		Pool: upstream.PoolConfig{MaxRequestsPerHost: 2}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	broker := mqtt.NewServer(mqtt.Config{})
	t.Cleanup(func() { broker.Close() })
	ln, err := broker.Listen(e, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &panelsRig{cl: cl, broker: broker, mqAddr: ln.Addr().String(), stop: make(chan struct{})}
	r.s = startAdmin(t, Config{Token: "panel-token", Routes: upstream.AdminRoutes(cl)}, e,
		cl.Collector(""), broker.Collector(""))
	t.Cleanup(r.close)

	// MQTT: a subscriber, and a publisher sending a retained QoS 1
	// message every 20 ms, both mosquitto clients.
	_, port, _ := strings.Cut(r.mqAddr, ":")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "panel/#", "-q", "1", "-i", "panel-sub")
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); sub.Wait() }()
	pub := exec.CommandContext(ctx, "mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", "panel/temp", "-q", "1",
		"-r", "-l", "-i", "panel-pub")
	in, err := pub.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	r.wg.Add(2)
	go func() { defer r.wg.Done(); pub.Wait() }()
	go func() {
		defer r.wg.Done()
		defer in.Close()
		for i := 0; ; i++ {
			select {
			case <-r.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(in, "reading %d\n", i); err != nil {
				return
			}
		}
	}()
	// A malformed CONNECT: the broker closes the connection with a reason
	// code, which the panel lists.
	bad, err := net.Dial("tcp", r.mqAddr)
	if err != nil {
		t.Fatal(err)
	}
	bad.Write([]byte{0x10, 0x04, 0x00, 0x02, 'X', 'Y'})
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, bad)
	bad.Close()
	// Upstream: a request every 15 ms, some failing, the slow host's hedged.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-r.stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			path := "/"
			if i%5 == 0 {
				path = "/fail"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			head := upstream.AppendRequestHead(nil, "GET", path, "legacy", nil, -1, false)
			cl.RoundTrip(ctx, &upstream.Request{Method: "GET", Head: head}, 0)
			cancel()
		}
	}()
	return r
}

func (r *panelsRig) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// TestPanelsJSON: /api/stats carries the MQTT broker's figures (a real
// broker, mosquitto clients) and /api/upstream the cluster's thresholds,
// hedges and hosts, as the panels read them.
func TestPanelsJSON(t *testing.T) {
	r := startPanelsRig(t)
	var st stats
	defer func() {
		if t.Failed() {
			b, _ := json.Marshal(st.MQTT)
			t.Logf("mqtt: %s", b)
		}
	}()
	testutil.Eventually(t, 10*time.Second, "MQTT traffic in /api/stats", func() bool {
		_, body, _ := get(t, r.s, "/api/stats", "panel-token")
		st = stats{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		q := st.MQTT
		// The subscriber's PUBACKs come after the publishes out are
		// counted: wait for them too.
		return q != nil && q.PacketsIn["connect"] >= 2 && q.PublishesIn["1"] >= 5 && q.PublishesOut["1"] >= 5 &&
			q.Subscriptions >= 1 && q.Retained == 1 && q.SessionsOnline >= 2 && q.Connections["3.1.1"] >= 2 &&
			q.PacketsIn["puback"] > 0 && q.PacketsOut["puback"] > 0 && q.PacketsOut["connack"] >= 2
	})
	q := st.MQTT
	if _, ok := q.Dropped["queue_full"]; !ok {
		t.Errorf("drop reasons not listed: %v", q.Dropped)
	}
	for _, e := range st.Extra {
		if strings.HasPrefix(e.Name, "warren_mqtt_") {
			t.Errorf("MQTT series %s also listed among the other series", e.Name)
		}
	}

	testutil.Eventually(t, 10*time.Second, "the MQTT close with a reason code", func() bool {
		_, body, _ := get(t, r.s, "/api/stats", "panel-token")
		st = stats{}
		json.Unmarshal([]byte(body), &st)
		return st.MQTT != nil && len(st.MQTT.Closes) > 0
	})
	t.Logf("MQTT closes: %v", st.MQTT.Closes)

	var up struct {
		Clusters []upstream.ClusterStats `json:"clusters"`
	}
	testutil.Eventually(t, 10*time.Second, "hedged requests in /api/upstream", func() bool {
		_, body, _ := get(t, r.s, "/api/upstream", "panel-token")
		if err := json.Unmarshal([]byte(body), &up); err != nil {
			t.Fatal(err)
		}
		return len(up.Clusters) == 1 && up.Clusters[0].RqHedged >= 2 && up.Clusters[0].RqHedgeWon >= 2
	})
	c := up.Clusters[0]
	if c.Name != "legacy" || len(c.Hosts) != 2 || c.HostLimits["requests"] != 2 || c.CircuitBreakers["requests"].Limit != 1024 {
		t.Errorf("cluster: %+v", c)
	}
}

// TestPanelsChromium loads the dashboard in headless Chromium over the rig
// and checks that the upstream and MQTT panels are shown and filled: the
// cluster block with its breaker, thresholds and a row per host, the
// upstream and MQTT charts with points, and the MQTT table with packets by
// type and drops by reason. It saves a screenshot beside the dashboard's.
func TestPanelsChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no %s: %v", chromiumPath, err)
	}
	r := startPanelsRig(t)
	testutil.Eventually(t, 10*time.Second, "traffic", func() bool {
		return r.cl.Stats().RqHedged > 0 && r.broker.Stats().PublishesIn[1] > 0
	})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/stats" {
			time.Sleep(150 * time.Millisecond) // spread the virtual-time polls over real time
		}
		r.s.Handler().ServeHTTP(w, req)
	}))
	defer ts.Close()
	dir := os.Getenv("WARREN_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "warren-admin-test")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "dashboard-panels.png")
	os.Remove(shot)
	dom := chromium(t, ts.URL+"/#token=panel-token", "--dump-dom", "--screenshot="+shot, "--window-size=1280,2600")
	if n := attr(t, dom, "dashboard", "data-polls"); n < 3 {
		t.Fatalf("%d polls, want ≥ 3", n)
	}
	if strings.Contains(dom, `id="upstream-section" hidden`) || strings.Contains(dom, `id="mqtt-section" hidden`) {
		t.Error("a panel is still hidden")
	}
	if n := attr(t, dom, "upstream", "data-clusters"); n != 1 {
		t.Errorf("upstream panel shows %d clusters, want 1", n)
	}
	if !regexp.MustCompile(`class="hosts" data-rows="2"`).MatchString(dom) {
		t.Error("no host table with 2 rows")
	}
	for _, want := range []string{"cluster legacy", "breaker closed", "hedged / won", "throttled / rate limited", "threshold hits", "per-host limit",
		"CONNECT in", "PUBLISH in, QoS 1", "dropped", "sessions online", "retained messages",
		"closed with reason code: protocol_error/malformed_packet"} {
		if !strings.Contains(dom, want) {
			t.Errorf("%q not on the page", want)
		}
	}
	for id, min := range map[string]int{"c-upstream": 2, "c-mqtt": 2, "c-mqtt-packets": 2} {
		if n := attr(t, dom, id, "data-points"); n < min {
			t.Errorf("chart %s drew %d points, want ≥ %d", id, n, min)
		}
	}
	if n := attr(t, dom, "mqtt", "data-rows"); n < 15 {
		t.Errorf("MQTT table has %d rows, want ≥ 15", n)
	}
	if fi, err := os.Stat(shot); err == nil {
		t.Logf("screenshot: %s (%d bytes)", shot, fi.Size())
	}
}

// TestPanelsHiddenWithout: a dashboard over an engine without clusters or
// MQTT keeps both panels hidden (no /api/upstream: 404, asked again only
// now and then).
func TestPanelsHiddenWithout(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no %s: %v", chromiumPath, err)
	}
	e, _ := startEngine(t, engine.Config{Loops: 1})
	s := startAdmin(t, Config{}, e)
	var upstreamAsks int
	var mu sync.Mutex
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/stats" {
			time.Sleep(100 * time.Millisecond)
		}
		if req.URL.Path == "/api/upstream" {
			mu.Lock()
			upstreamAsks++
			mu.Unlock()
		}
		s.Handler().ServeHTTP(w, req)
	}))
	defer ts.Close()
	dom := chromium(t, ts.URL+"/", "--dump-dom")
	polls := attr(t, dom, "dashboard", "data-polls")
	if polls < 3 {
		t.Fatalf("%d polls", polls)
	}
	for _, id := range []string{"upstream-section", "mqtt-section", "upstream-card", "mqtt-card"} {
		if !regexp.MustCompile(`id="` + id + `"[^>]*hidden`).MatchString(dom) {
			t.Errorf("#%s shown without its figures", id)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if upstreamAsks == 0 || upstreamAsks > 1+polls/30 {
		t.Errorf("/api/upstream asked %d times in %d polls", upstreamAsks, polls)
	}
}

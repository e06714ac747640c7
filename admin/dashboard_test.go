package admin

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

const chromiumPath = "/usr/bin/chromium"

// chromium runs headless Chromium on url with extra flags and returns its
// standard output.
func chromium(t *testing.T, url string, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,1280", "--virtual-time-budget=15000",
		"--hide-scrollbars"}, flags...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", flags, err, stderr.String())
	}
	return string(out)
}

// attr returns the integer attribute name of the element with id in dom.
func attr(t *testing.T, dom, id, name string) int {
	t.Helper()
	m := regexp.MustCompile(`<[a-z]+ [^>]*id="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindString(dom)
	if m == "" {
		t.Fatalf("element #%s not in the DOM", id)
	}
	v := regexp.MustCompile(name + `="(\d+)"`).FindStringSubmatch(m)
	if v == nil {
		t.Fatalf("#%s has no %s: %s", id, name, m)
	}
	n, _ := strconv.Atoi(v[1])
	return n
}

// TestDashboardChromium loads the dashboard in headless Chromium against a
// live engine with traffic and checks that every chart received data, then
// saves a screenshot. The HTTP and WebSocket series come from stand-in
// collectors fed with synthetic samples (the admin imports no protocol).
func TestDashboardChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no %s: %v", chromiumPath, err)
	}
	e, addr := startEngine(t, engine.Config{Loops: 4})
	reqs, lat, msgs, devices := protoCollectors()
	s := startAdmin(t, Config{Token: "dash-token"}, e, reqs, lat, msgs, devices)

	// Traffic: a dozen connections, a few closed for different reasons,
	// the rest sending lines of varied size until the test ends.
	cs := dial(t, e, addr, 12)
	cs[0].Close()
	cs[1].Write([]byte("bye\n"))
	cs[2].Write([]byte("bad\n"))
	cs[3].Write([]byte("bad\n"))
	for _, ci := range e.Conns() {
		if ci.Remote.String() == cs[4].LocalAddr().String() {
			e.CloseConn(ci.ID, engine.ReasonAdmin)
		}
	}
	testutil.Eventually(t, 0, "closes", func() bool { return e.Stats().Active == 7 })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for i, c := range cs[5:] {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			r := bufio.NewReader(c)
			line := strings.Repeat("z", 10+i*i*40) + "\n"
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(5+i) * time.Millisecond):
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
		}(i, c)
	}
	wg.Add(1)
	go func() { // synthetic HTTP and WebSocket figures
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			k := 20 + rand.IntN(20)
			reqs.WithLabelValues("2xx").Add(float64(k))
			if n%7 == 0 {
				reqs.WithLabelValues("5xx").Inc()
			}
			for j := 0; j < k; j++ {
				lat.Observe(0.0005 + rand.ExpFloat64()*0.004)
			}
			msgs.WithLabelValues("in").Add(float64(k * 3))
			msgs.WithLabelValues("out").Add(float64(k * 2))
			devices.Set(float64(1000 + n%50))
		}
	}()

	wg.Add(1)
	go func() { // churn: connections come and go, closed three ways
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(40 * time.Millisecond):
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			c.Write([]byte("hi\n"))
			bufio.NewReader(c).ReadString('\n')
			switch n % 3 {
			case 1:
				c.Write([]byte("bye\n"))
			case 2:
				c.Write([]byte("bad\n"))
			}
			c.Close()
		}
	}()

	// Chromium runs the page on virtual time, so its one-second polls come
	// back to back; delaying each poll spreads the samples over real time,
	// as a person watching would see them.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/stats" {
			time.Sleep(150 * time.Millisecond)
		}
		s.Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()
	// The screenshot outlives the test (one file, overwritten each run) so
	// it can be looked at; WARREN_SCREENSHOT_DIR puts it elsewhere.
	dir := os.Getenv("WARREN_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "warren-admin-test")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "dashboard.png")
	os.Remove(shot)
	dom := chromium(t, ts.URL+"/#token=dash-token", "--dump-dom", "--screenshot="+shot)
	if strings.Contains(dom, `data-state="unauthorized"`) || strings.Contains(dom, `data-state="error"`) {
		t.Fatalf("dashboard could not poll:\n%s", dom)
	}
	if n := attr(t, dom, "dashboard", "data-polls"); n < 3 {
		t.Errorf("%d polls, want ≥ 3", n)
	}
	checks := map[string]int{"c-active": 3, "c-rates": 2, "c-bytes": 2, "c-memory": 3, "c-workers": 3,
		"c-requests": 2, "c-latency": 1, "c-reasons": 4, "c-loops": 4}
	for id, min := range checks {
		if n := attr(t, dom, id, "data-points"); n < min {
			t.Errorf("chart %s drew %d points, want ≥ %d", id, n, min)
		}
	}
	if n := attr(t, dom, "busiest", "data-rows"); n < 7 || n > 10 {
		t.Errorf("busiest table has %d rows, want 7 to 10", n)
	}
	if !strings.Contains(dom, "warren_gateway_devices_online") {
		t.Error("extra series not listed")
	}

	// Without the token the page asks for it and plots nothing.
	dom = chromium(t, ts.URL+"/", "--dump-dom")
	if !strings.Contains(dom, `data-state="unauthorized"`) || strings.Contains(dom, `<form id="auth" hidden`) {
		t.Errorf("no token prompt without a token")
	}
	if n := attr(t, dom, "c-active", "data-points"); n != 0 {
		t.Errorf("chart drew %d points without a token", n)
	}

	fi, err := os.Stat(shot)
	if err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("dashboard screenshot: %s (%d bytes)", shot, fi.Size())
}

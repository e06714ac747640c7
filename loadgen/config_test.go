package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"", ""},
		{"3", "127.0.1.1 127.0.1.2 127.0.1.3"},
		{"127.0.1.1-127.0.1.3", "127.0.1.1 127.0.1.2 127.0.1.3"},
		{"127.0.1.254-127.0.2.2", "127.0.1.254 127.0.2.1 127.0.2.2"},
		{"127.0.0.1, 10.0.0.1-10.0.0.2", "127.0.0.1 10.0.0.1 10.0.0.2"},
		{"::1", "::1"},
	} {
		got, err := ParseSources(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if s := strings.Trim(fmt.Sprint(got), "[]"); s != tc.want {
			t.Errorf("%q: %s, want %s", tc.in, s, tc.want)
		}
	}
	if a, _ := ParseSources("60"); len(a) != 60 || a[59] != netip.MustParseAddr("127.0.1.60") {
		t.Fatalf("60 sources: %v", a)
	}
	for _, bad := range []string{"0", "x", "127.0.1.5-127.0.1.1", "127.0.0.1-::1", "1.2.3.4-nope"} {
		if _, err := ParseSources(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tg, err := parseTarget(context.Background(), "ws://127.0.0.1:9000/ws?room=a")
	if err != nil || !tg.ws || tg.addr.String() != "127.0.0.1:9000" || tg.path != "/ws?room=a" ||
		tg.host != "127.0.0.1:9000" {
		t.Fatalf("%+v %v", tg, err)
	}
	tg, err = parseTarget(context.Background(), "http://localhost:8080")
	if err != nil || tg.ws || tg.path != "/" || !tg.addr.Addr().IsLoopback() {
		t.Fatalf("%+v %v", tg, err)
	}
	tg, err = parseTarget(context.Background(), "https://localhost/x")
	if err != nil || !tg.tls || tg.addr.Port() != 443 || tg.sni != "localhost" {
		t.Fatalf("%+v %v", tg, err)
	}
	for _, bad := range []string{"ftp://127.0.0.1/", "127.0.0.1:80", "http://:80/", "http://127.0.0.1:99999/"} {
		if _, err := parseTarget(context.Background(), bad); !errors.Is(err, ErrBadURL) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Conns != 100 || c.Duration != defaultDuration || c.Inflight != 1 || c.MsgSize != 32 ||
		c.Timeout != defaultTimeout || c.Procs != 1 {
		t.Fatalf("%+v", c)
	}
	if c := (Config{Hold: 1}).withDefaults(); c.Duration != 0 {
		t.Fatalf("hold-only run got traffic %v", c.Duration)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.892352e+07
process_cpu_seconds_total 4.67
warren_connections_active{loop="0"} 3
warren_connections_active{loop="1"} 4
warren_connections_active_total 99
go_goroutines 12
`
	m, err := parseMetrics(strings.NewReader(text), "process_resident_memory_bytes", "process_cpu_seconds_total",
		"warren_connections_active")
	if err != nil {
		t.Fatal(err)
	}
	if m["process_resident_memory_bytes"] != 18923520 || m["process_cpu_seconds_total"] != 4.67 ||
		m["warren_connections_active"] != 7 || len(m) != 3 {
		t.Fatalf("%v", m)
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 8 0 100 0 0"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 4.0 {
		t.Fatalf("%v %v", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Fatal("short stat accepted")
	}
}

func TestErrorKindNames(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range ErrorKinds() {
		s := k.String()
		if s == "unknown" || seen[s] {
			t.Fatalf("kind %d: %q", k, s)
		}
		seen[s] = true
	}
}

package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/warrenhq/warren/websocket"
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
	for _, bad := range []string{"https://127.0.0.1/", "127.0.0.1:80", "http://:80/", "http://127.0.0.1:99999/"} {
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

func TestCheckUpgrade(t *testing.T) {
	key := websocket.NewKey()
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + websocket.AcceptKey(key) + "\r\n\r\n"
	var p respParser
	if n, _, err := p.upgrade([]byte(ok[:len(ok)-1]), []byte(key)); n != 0 || err != nil {
		t.Fatalf("incomplete head: %d, %v", n, err)
	}
	// The frame after the head is not consumed.
	if n, _, err := p.upgrade([]byte(ok+"\x81\x00"), []byte(key)); n != len(ok) || err != nil {
		t.Fatalf("upgrade = %d, %v", n, err)
	}
	for _, tc := range []struct {
		head string
		kind ErrorKind
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", KindBadStatus},
		{strings.Replace(ok, websocket.AcceptKey(key), websocket.AcceptKey(websocket.NewKey()), 1), KindProtocol},
		{strings.Replace(ok, "Upgrade: WebSocket\r\n", "", 1), KindProtocol},
		{strings.Replace(ok, "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", 1), KindProtocol},
		{strings.Replace(ok, "HTTP/1.1", "HTTP/1.0", 1), KindProtocol},
		{"garbage\r\n\r\n", KindProtocol},
		{"HTTP/1.1 101 Switching Protocols\r\nno colon\r\n\r\n", KindProtocol},
	} {
		var p respParser
		_, kind, err := p.upgrade([]byte(tc.head), []byte(key))
		if err == nil || kind != tc.kind {
			t.Errorf("%.50q: kind %v err %v", tc.head, kind, err)
		}
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

//go:build !windows

package upstreamtls_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// TestNginxBackend: nginx as an https backend, TLS 1.2 and 1.3, with
// session tickets; a few requests on one connection, then on new ones.
func TestNginxBackend(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not installed (scripts/test installs it)")
	}
	for _, proto := range []string{"TLSv1.2", "TLSv1.3"} {
		t.Run(proto, func(t *testing.T) {
			dir := t.TempDir()
			ca, cert, key := serverCert(t, dir)
			addr := startNginx(t, dir, func(port int) string {
				// master_process off: one process, so ending it leaves no
				// worker behind (an orphaned worker kept the descriptors it
				// inherited, such as a benchmark lock held by whoever ran
				// the tests).
				return fmt.Sprintf(`master_process off;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d ssl;
    ssl_certificate %[3]s;
    ssl_certificate_key %[4]s;
    ssl_protocols %[5]s;
    ssl_session_tickets on;
    location / { return 200 "nginx $ssl_protocol $ssl_session_reused $ssl_server_name"; }
  }
}
`, dir, port, cert, key, proto)
			})
			e := startEngine(t)
			cl, d := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{"https://" + addr},
				Pool: upstream.PoolConfig{MaxConnsPerHost: 1, MaxRequestsPerConn: 3}},
				upstreamtls.Config{CAFile: ca, ServerName: "backend.test"})
			for i := range 9 {
				resp, err := get(t, cl, "/")
				if err != nil {
					t.Fatal(i, err)
				}
				want := "nginx " + proto + " "
				if resp.Status != 200 || !strings.HasPrefix(string(resp.Body), want) || !strings.HasSuffix(string(resp.Body), " backend.test") {
					t.Fatalf("%d: %d %q", i, resp.Status, resp.Body)
				}
			}
			st := cl.Stats()
			if st.TLSHandshakes != 3 {
				t.Errorf("%d handshakes, want 3 (3 requests a connection)", st.TLSHandshakes)
			}
			t.Logf("%s: %+v handshakes (full, resumed); connections %s", proto, d.Stats(), strconv.FormatUint(st.CxTotal, 10))
			if proto == "TLSv1.2" && d.Stats().Resumed == 0 {
				t.Errorf("no TLS 1.2 session resumed: %+v", d.Stats())
			}
		})
	}
}

// startNginx runs nginx with the configuration conf returns for a free
// loopback port, in dir, and returns its address once nginx has bound it
// (its pid file is written after its listeners are open). The port is
// free when picked but closed before nginx binds it: when another process
// took it in between (nginx exits: Address already in use), nginx is
// started again on a new port, twice at most.
func startNginx(t *testing.T, dir string, conf func(port int) string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		pid, errLog := filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log")
		os.Remove(pid)
		os.Remove(errLog)
		os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf(port)), 0o644)
		cmd := exec.Command("nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(pid); err == nil {
				return addr
			}
			select {
			case <-exited:
				b, _ := os.ReadFile(errLog)
				if attempt < 3 && strings.Contains(string(b), "Address already in use") {
					t.Logf("nginx: port %d was taken before it bound it; a new one", port)
				} else {
					t.Fatalf("nginx exited: %s", b)
				}
			default:
				if time.Now().After(deadline) {
					b, _ := os.ReadFile(errLog)
					t.Fatalf("nginx did not start: %s", b)
				}
				continue
			}
			break
		}
	}
}

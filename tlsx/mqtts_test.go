package tlsx_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
	"github.com/warrenhq/warren/tlsx"
)

// TestMosquittoOverTLS: mosquitto_pub and mosquitto_sub --cafile (TLS 1.2
// and 1.3, ALPN "mqtt", and with a client certificate on a mutual-TLS
// listener) reach warren's MQTT broker through the TLS layer (TLS 1.2 on
// warren's record layer).
func TestMosquittoOverTLS(t *testing.T) {
	pub, sub := need(t, "mosquitto_pub"), need(t, "mosquitto_sub")
	p := newPKI(t)
	e := testutil.StartEngine(t, engine.Config{})
	broker := mqtt.NewServer(mqtt.Config{})
	t.Cleanup(func() { broker.Close() })
	var servers []*tlsx.Server
	listen := func(cfg tlsx.Config) string {
		cfg.CertFile, cfg.KeyFile, cfg.NextProtos = p.certFile, p.keyFile, []string{"mqtt"}
		ts, err := tlsx.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ts.Close)
		servers = append(servers, ts)
		ln, err := ts.Listen(e, "127.0.0.1:0", broker.Handler())
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		return a[strings.LastIndexByte(a, ':')+1:]
	}
	plain := listen(tlsx.Config{})
	mtls := listen(tlsx.Config{ClientCAFile: p.caFile})
	// mosquitto's --tls-version tlsv1.2 is a minimum; an OpenSSL
	// configuration with MaxProtocol makes it speak TLS 1.2.
	max12 := filepath.Join(p.dir, "openssl-max12.cnf")
	if err := os.WriteFile(max12, []byte("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n[sys]\nMaxProtocol = TLSv1.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, port string
		args       []string
		env        string
	}{
		{"tls12", plain, []string{"--tls-version", "tlsv1.2"}, "OPENSSL_CONF=" + max12},
		{"tls13-alpn", plain, []string{"--tls-version", "tlsv1.3", "--tls-alpn", "mqtt"}, ""},
		{"mtls", mtls, []string{"--cert", p.clientCert, "--key", p.clientKey}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := append([]string{"-h", "localhost", "-p", tc.port, "--cafile", p.caFile, "-t", "tls/" + tc.name}, tc.args...)
			cmd := func(name string, args ...string) *exec.Cmd {
				c := exec.Command(name, args...)
				if tc.env != "" {
					c.Env = append(os.Environ(), tc.env)
				}
				return c
			}
			if o, err := cmd(pub, append(base, "-r", "-q", "1", "-m", "kept-"+tc.name)...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v %s", err, o)
			}
			o, err := cmd(sub, append(base, "-C", "1", "-W", "5")...).CombinedOutput()
			if err != nil || string(o) != "kept-"+tc.name+"\n" {
				t.Fatalf("mosquitto_sub: %v %q", err, o)
			}
		})
	}
	onWarrenLayer12(t, servers[0], 2) // mosquitto_pub and mosquitto_sub over TLS 1.2
	// Without a client certificate the mutual-TLS listener refuses.
	if o, err := exec.Command(pub, "-h", "localhost", "-p", mtls, "--cafile", p.caFile, "-t", "x", "-m", "y").CombinedOutput(); err == nil {
		t.Fatalf("mosquitto_pub without a certificate got through: %s", o)
	}
}

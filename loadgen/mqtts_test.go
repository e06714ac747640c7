package loadgen_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/loadgen"
	"github.com/warrenhq/warren/mqtt"
	"github.com/warrenhq/warren/tlsx"
)

// TestMQTTSLoad: the MQTT mode over mqtts:// against warren's broker behind
// tlsx (ALPN "mqtt"), the server verified with CAFile; on a mutual-TLS
// listener with CertFile/KeyFile, and refused without them.
func TestMQTTSLoad(t *testing.T) {
	ca := newTestCA(t)
	srvPair, _, _ := ca.issue(t, "localhost", false)
	_, certFile, keyFile := ca.issue(t, "mqtt-load-1", true)
	e := testutil.StartEngine(t, engine.Config{Logger: slog.New(slog.DiscardHandler)})
	b := mqtt.NewServer(mqtt.Config{PublishRate: -1}) // closed loop over loopback outruns the per-client default
	defer b.Close()
	listen := func(cfg tlsx.Config) string {
		cfg.Certificate, cfg.NextProtos, cfg.RatePerIP, cfg.BanThreshold = &srvPair, []string{"mqtt"}, -1, -1
		ts, err := tlsx.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ts.Close)
		ln, err := ts.Listen(e, "127.0.0.1:0", b.Handler())
		if err != nil {
			t.Fatal(err)
		}
		return ln.Addr().String()
	}
	plain, mutual := listen(tlsx.Config{}), listen(tlsx.Config{ClientCAs: ca.pool})
	for _, c := range []struct {
		addr, qos        string
		withCert, wantOK bool
	}{{plain, "0", false, true}, {plain, "1", false, true}, {mutual, "1", true, true}, {mutual, "0", false, false}} {
		cfg := loadgen.Config{URL: "mqtts://" + c.addr + "/lt?qos=" + c.qos, CAFile: ca.file,
			Conns: 5, Duration: 300 * time.Millisecond, Inflight: 2, Timeout: 5 * time.Second}
		if c.withCert {
			cfg.CertFile, cfg.KeyFile = certFile, keyFile
		}
		rep, err := loadgen.Run(context.Background(), cfg)
		if c.wantOK {
			if err != nil {
				t.Fatal(err)
			}
			if rep.Protocol != "mqtt" || rep.Connects != 5 || rep.Requests == 0 || len(rep.Errors) != 0 {
				t.Fatalf("%+v: %+v", c, rep)
			}
		} else if err == nil && (rep.Requests > 0 || rep.Connects > 0) {
			t.Fatalf("%+v without a client certificate: %d connects, %d requests", c, rep.Connects, rep.Requests)
		}
	}
	// An untrusted server: no CAFile, so the system roots, which do not
	// know the test CA.
	rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: "mqtts://" + plain + "/lt", Conns: 2,
		Duration: 200 * time.Millisecond, Timeout: 5 * time.Second})
	if err == nil && rep.Connects > 0 {
		t.Fatalf("untrusted server: %d connects", rep.Connects)
	}
}

package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/tlsx"
)

// ExampleNew_tls runs a gateway with its TLS listeners (https + wss, and
// MQTT over TLS), a legacy backend for the paths it does not serve, and a
// telemetry webhook — what `warren serve -tls-addr -mqtts -upstream
// -webhook` sets up.
func ExampleNew_tls() {
	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("") // loops, no listener of its own
	defer eng.Close()

	// A certificate made here; tlsx.Config{CertFile, KeyFile} in practice,
	// with ClientCAFile for devices that log in by certificate.
	ts, err := tlsx.New(tlsx.Config{Certificate: selfSigned()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ts.Watch(ctx) // SIGHUP and file changes reload the certificate

	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "legacy")
	}))
	defer legacy.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()

	g, err := gateway.New(eng, gateway.Config{
		Addr: "127.0.0.1:0", API: "-", MQTT: "127.0.0.1:0", Auth: gateway.NoAuth(),
		TLS: ts, TLSAddr: "127.0.0.1:0", MQTTS: "127.0.0.1:0",
		Upstream: []string{legacy.URL},
		Webhook:  gateway.WebhookConfig{URL: hook.URL + "/telemetry"},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()

	// A path the gateway does not serve, over TLS, answered by the backend.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + g.TLSAddr() + "/old/api")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body), resp.TLS != nil, g.MQTTSAddr() != "")
	// Output: 200 legacy true true
}

func selfSigned() *tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

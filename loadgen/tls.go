package loadgen

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/warrenhq/warren/tlsx"
)

// newTLSClient makes the TLS client of an https:// or wss:// run: the server's
// certificate verified against Config.CAFile (or the system's roots)
// unless Config.Insecure, and Config.CertFile presented when the server
// asks for a client certificate.
func newTLSClient(cfg Config, tgt target) (*tlsx.Client, error) {
	tc, err := tlsConfig(cfg, tgt)
	if err != nil {
		return nil, err
	}
	return tlsx.NewClient(tc, 0, cfg.Timeout), nil
}

// tlsConfig is newTLSClient's tls.Config.
func tlsConfig(cfg Config, tgt target) (*tls.Config, error) {
	protos := []string{"http/1.1"}
	if tgt.ws {
		protos = nil // what browsers do for wss://, and what a WebSocket-only listener may not offer
	}
	return clientTLSConfig(cfg, tgt.sni, protos)
}

// clientTLSConfig is the TLS client configuration of a run: server name
// sni, ALPN protos, the server verified against Config.CAFile (or the
// system's roots) unless Config.Insecure, and Config.CertFile presented
// when the server asks for a client certificate.
func clientTLSConfig(cfg Config, sni string, protos []string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: sni, InsecureSkipVerify: cfg.Insecure, NextProtos: protos}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("loadgen: CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("loadgen: no certificate in %s", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loadgen: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

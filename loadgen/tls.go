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
// unless Config.Insecure.
func newTLSClient(cfg Config, tgt target) (*tlsx.Client, error) {
	tc := &tls.Config{ServerName: tgt.sni, InsecureSkipVerify: cfg.Insecure, NextProtos: []string{"http/1.1"}}
	if tgt.ws {
		tc.NextProtos = nil // what browsers do for wss://, and what a WebSocket-only listener may not offer
	}
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
	return tlsx.NewClient(tc, 0, cfg.Timeout), nil
}

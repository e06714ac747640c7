package main

import (
	"flag"
	"log/slog"
	"strings"

	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// upstreamTLSFlags registers the flags of TLS to https:// backends
// (warren proxy, and warren serve for -upstream and -webhook) on fs.
func upstreamTLSFlags(fs *flag.FlagSet) *upstreamtls.Config {
	cfg := &upstreamtls.Config{}
	fs.StringVar(&cfg.CAFile, "upstream-ca", "", "PEM roots that https:// backends' certificates must chain to (empty: the system roots)")
	fs.BoolVar(&cfg.Insecure, "upstream-insecure", false, "do not verify https:// backends' certificates (logged as a warning)")
	fs.StringVar(&cfg.CertFile, "upstream-cert", "", "PEM client certificate sent to https:// backends that ask for one (mTLS; with -upstream-key)")
	fs.StringVar(&cfg.KeyFile, "upstream-key", "", "PEM key of -upstream-cert")
	fs.StringVar(&cfg.ServerName, "upstream-server-name", "", "server name sent (SNI) and verified for every https:// backend (empty: each URL's host)")
	return cfg
}

// anyHTTPS reports whether a host list has an https:// host.
func anyHTTPS(hosts []string) bool {
	for _, h := range hosts {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(h)), "https://") {
			return true
		}
	}
	return false
}

// setupUpstreamTLS fills cc.DialTLS when cc has https:// hosts, and
// returns the dialer (nil without https hosts). what names the user in
// the insecure warning.
func setupUpstreamTLS(cfg *upstreamtls.Config, cc *upstream.ClusterConfig, log *slog.Logger, what string) (*upstreamtls.Dialer, error) {
	if cfg == nil || !anyHTTPS(cc.Hosts) {
		return nil, nil
	}
	d, err := upstreamtls.New(*cfg)
	if err != nil {
		return nil, err
	}
	cfg.Warn(log, what)
	cc.DialTLS = d.Handler
	return d, nil
}

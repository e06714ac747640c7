package main

import (
	"flag"
	"log/slog"

	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// serveUpstreamTLS holds warren serve's flags of TLS to https:// -upstream
// backends and -webhook endpoints (the same names as warren proxy's).
type serveUpstreamTLS struct{ cfg *upstreamtls.Config }

// serveUpstreamTLSFlags registers them on fs.
func serveUpstreamTLSFlags(fs *flag.FlagSet) serveUpstreamTLS {
	return serveUpstreamTLS{cfg: upstreamTLSFlags(fs)}
}

// apply fills the DialTLS of the -upstream cluster and of the webhook's
// when they have https:// hosts; one Dialer serves both (sessions are
// kept per server name).
func (u serveUpstreamTLS) apply(gcfg *gateway.Config, log *slog.Logger) error {
	hosts := append([]string{gcfg.Webhook.URL}, gcfg.Upstream...)
	if !anyHTTPS(hosts) {
		return nil
	}
	d, err := upstreamtls.New(*u.cfg)
	if err != nil {
		return err
	}
	u.cfg.Warn(log, "warren serve")
	gcfg.UpstreamCluster.DialTLS = d.Handler
	gcfg.Webhook.Cluster.DialTLS = d.Handler
	return nil
}

package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// serveUpstreamFlags registers warren serve's -upstream flags that warren
// proxy has under the same names, defaults and meaning: the response head
// and interim bounds (-max-response-header-bytes, -max-response-headers,
// -max-interim, -max-interim-bytes) on the -upstream cluster and proxy,
// and TLS to the backends (serveUpstreamTLSFlags). The request head bounds
// are the device listener's own (-max-header-bytes, -max-headers,
// -max-uri-bytes, -max-body-bytes: the http1 server parses a request
// before it is forwarded; serve's -max-body-bytes is the HTTP server's,
// 10 MiB buffered by default, not warren proxy's unbounded streamed one).
// checkServeUpstreamFlags refuses the head flags without -upstream.
func serveUpstreamFlags(fs *flag.FlagSet, gcfg *gateway.Config) serveUpstreamTLS {
	cc, pc := &gcfg.UpstreamCluster, &gcfg.UpstreamProxy
	fs.IntVar(&cc.MaxResponseHeaderBytes, "max-response-header-bytes", http1.DefaultMaxHeaderBytes, "-upstream: backend response head limit (and a chunked response's trailer section); over it 502 bad_response")
	fs.IntVar(&cc.MaxResponseHeaders, "max-response-headers", http1.DefaultMaxHeaders, "-upstream: backend response header field count limit (and trailer fields); over it 502 bad_response")
	fs.IntVar(&pc.MaxInterim, "max-interim", proxy.DefaultMaxInterim, "-upstream: interim (1xx) responses other than 100 Continue (103 Early Hints ...) passed on per request; 0: none (CPython's http.client takes a 103 for the final response); more are dropped and counted")
	fs.IntVar(&pc.MaxInterimBytes, "max-interim-bytes", proxy.DefaultMaxInterimBytes, "-upstream: bytes of the interim response heads passed on per request under -max-interim; more are dropped and counted (0: 16 KiB)")
	return serveUpstreamTLSFlags(fs)
}

// serveUpstreamHeadFlags are serveUpstreamFlags' flags that bound the
// -upstream proxy alone: without -upstream they would do nothing.
var serveUpstreamHeadFlags = []string{"max-response-header-bytes", "max-response-headers", "max-interim", "max-interim-bytes"}

// checkServeUpstreamFlags refuses serveUpstreamHeadFlags set on fs (parsed)
// without -upstream, as -route-limit is refused: a bound that is silently
// ignored reads as one that holds. The TLS flags are not among them: they
// serve https:// -webhook endpoints too.
func checkServeUpstreamFlags(fs *flag.FlagSet) error {
	if up := fs.Lookup("upstream"); up == nil || up.Value.String() != "" {
		return nil
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		for _, name := range serveUpstreamHeadFlags {
			if f.Name == name && err == nil {
				err = fmt.Errorf("-%s needs -upstream (it bounds the proxied responses)", name)
			}
		}
	})
	return err
}

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

// serveUpstreamConfig applies warren serve's -upstream-config file to the
// -upstream cluster: a JSON object of warren proxy's cluster policy
// settings under their flag names (clusterPolicyFlags: "retries",
// "breaker-off", "hc-interval", "balancer", "hash-header", ...), so the
// legacy cluster's breaker, retries, health checks, outlier detection and
// balancer are set as warren proxy's are; a setting the file leaves out
// takes warren proxy's default. serve's own -upstream-timeout and
// -upstream-max-conns-per-host, when given on the command line, win over
// the file's "timeout" and "max-conns-per-host".
func serveUpstreamConfig(fs *flag.FlagSet, path string, gcfg *gateway.Config) error {
	if path == "" {
		return nil
	}
	if up := fs.Lookup("upstream"); up == nil || up.Value.String() == "" {
		return fmt.Errorf("-upstream-config needs -upstream (it configures the proxied cluster)")
	}
	cc := &gcfg.UpstreamCluster
	timeout, maxConns := cc.Timeout, cc.Pool.MaxConnsPerHost
	pfs := flag.NewFlagSet("-upstream-config", flag.ContinueOnError)
	pfs.SetOutput(io.Discard)
	f := clusterPolicyFlags(pfs, cc)
	if err := applyConfigFile(pfs, path); err != nil {
		return fmt.Errorf("-upstream-config: %w", err)
	}
	if flagSet(fs, "upstream-timeout") || !flagSet(pfs, "timeout") {
		cc.Timeout = timeout
	}
	if flagSet(fs, "upstream-max-conns-per-host") || !flagSet(pfs, "max-conns-per-host") {
		cc.Pool.MaxConnsPerHost = maxConns
	}
	cc.Hosts = splitList(fs.Lookup("upstream").Value.String()) // for -weights' count; the gateway sets them again
	if err := f.finish(cc, &gcfg.UpstreamProxy); err != nil {
		return fmt.Errorf("-upstream-config: %w", err)
	}
	return nil
}

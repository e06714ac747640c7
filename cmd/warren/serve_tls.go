package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"

	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/stack"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/upstream"
)

// Environment variables that carry the TLS listeners' fixed ports from
// the prefork parent to the workers (as preforkAPIEnv does for -api).
const (
	preforkTLSEnv   = "WARREN_PREFORK_TLS_ADDR"
	preforkMQTTSEnv = "WARREN_PREFORK_MQTTS"
)

// serveExtra holds `warren serve`'s TLS, upstream and webhook flags.
type serveExtra struct {
	tls      tlsx.Config
	tlsAddr  string
	mqtts    string
	upstream string
	webhook  gateway.WebhookConfig
	routes   *[]proxy.RouteLimit // -route-limit, in the gateway's Config
}

// serveExtraFlags registers -tls-*, -tls-addr, -mqtts, -upstream* and
// -webhook* on fs.
func serveExtraFlags(fs *flag.FlagSet, x *serveExtra, gcfg *gateway.Config) {
	stack.TLSFlags(fs, &x.tls)
	fs.Func("tls-client-cert", "with -tls-client-ca: require (every device presents a certificate) or optional (devices with a token need none) (default require)", func(v string) error {
		switch v {
		case "require":
			x.tls.ClientAuth = tls.RequireAndVerifyClientCert
		case "optional":
			x.tls.ClientAuth = tls.VerifyClientCertIfGiven
		default:
			return fmt.Errorf("want require or optional")
		}
		return nil
	})
	fs.StringVar(&x.tlsAddr, "tls-addr", "", "https + wss device listener, the routes of -addr over TLS (needs -tls-cert and -tls-key); empty disables")
	fs.StringVar(&x.mqtts, "mqtts", "", "MQTT over TLS listener, ALPN mqtt, conventionally :8883 (needs -tls-cert, -tls-key and -mqtt); empty disables")
	fs.StringVar(&x.upstream, "upstream", "", "legacy backends http://host:port[,...]: requests on the device listeners that warren does not serve (WebSocket upgrades included) are proxied to them; empty: 404")
	cc := &gcfg.UpstreamCluster
	fs.DurationVar(&cc.Timeout, "upstream-timeout", upstream.DefaultTimeout, "-upstream: request timeout, retries included; 504 after")
	fs.IntVar(&cc.Pool.MaxConnsPerHost, "upstream-max-conns-per-host", upstream.DefaultMaxConnsPerHost, "-upstream: connections per backend")
	fs.IntVar(&gcfg.UpstreamProxy.MaxBacklog, "upstream-max-backlog", proxy.DefaultMaxBacklog, "-upstream: bytes queued toward a slow peer before the other side is paused")
	x.routes = &gcfg.UpstreamProxy.RouteLimits
	fs.Var((*routeLimitsFlag)(x.routes), "route-limit",
		"-upstream: inbound limit of a proxied path prefix, repeatable, as warren proxy's: PREFIX=RATE[,burst=N][,header=NAME][,keys=N][,name=LABEL]; over it: 429 with Retry-After (none by default)")
	w := &x.webhook
	fs.StringVar(&w.URL, "webhook", "", "telemetry also POSTed in JSON batches to this http://host:port/path (see docs/gateway.md); empty disables")
	fs.IntVar(&w.Queue, "webhook-queue", gateway.DefaultWebhookQueue, "-webhook: messages waiting to be batched; over it they are dropped (counted, queue_full)")
	fs.Int64Var(&w.QueueBytes, "webhook-queue-bytes", gateway.DefaultWebhookQueueBytes, "-webhook: bytes of the messages waiting to be batched, as encoded (negative: no bound); over it they are dropped (counted, queue_bytes_full)")
	fs.IntVar(&w.Batch.MaxCount, "webhook-batch-count", upstream.DefaultBatchCount, "-webhook: messages per batch at most")
	fs.IntVar(&w.Batch.MaxBytes, "webhook-batch-bytes", upstream.DefaultBatchBytes, "-webhook: a batch is sent once its messages reach this many bytes")
	fs.DurationVar(&w.Batch.MaxDelay, "webhook-batch-delay", upstream.DefaultBatchDelay, "-webhook: a batch is sent this long after its first message at most")
	fs.IntVar(&w.MaxInFlight, "webhook-max-in-flight", 4, "-webhook: batches being delivered at once; a batch closed over it is dropped (counted, in_flight)")
	fs.DurationVar(&w.Cluster.Timeout, "webhook-timeout", upstream.DefaultTimeout, "-webhook: a batch's delivery timeout, retries included")
}

// check validates the flags' combination.
func (x *serveExtra) check(mqttAddr string) error {
	hasCert := x.tls.CertFile != ""
	switch {
	case (x.tlsAddr != "" || x.mqtts != "") && !hasCert:
		return fmt.Errorf("-tls-addr and -mqtts need -tls-cert and -tls-key")
	case x.mqtts != "" && mqttAddr == "":
		return fmt.Errorf("-mqtts needs MQTT (-mqtt not empty)")
	case hasCert && x.tlsAddr == "" && x.mqtts == "":
		return fmt.Errorf("-tls-cert without -tls-addr or -mqtts: name the TLS listener(s)")
	}
	if x.routes != nil && len(*x.routes) > 0 {
		if x.upstream == "" {
			return fmt.Errorf("-route-limit needs -upstream (it limits the proxied routes)")
		}
		if err := proxy.ValidateRouteLimits(*x.routes); err != nil {
			return fmt.Errorf("-route-limit: %v", err)
		}
	}
	return nil
}

// apply sets the gateway's TLS listeners (starting the TLS server, its
// certificate watcher and metrics), the upstream and the webhook. The
// returned function stops the TLS server.
func (x *serveExtra) apply(st *stack.Stack, gcfg *gateway.Config) (func(), error) {
	gcfg.Upstream = splitList(x.upstream)
	gcfg.Webhook = x.webhook
	if u := os.Getenv(preforkTLSEnv); u != "" && st.WorkerAddr != "" {
		x.tlsAddr = u
	}
	if u := os.Getenv(preforkMQTTSEnv); u != "" && st.WorkerAddr != "" {
		x.mqtts = u
	}
	if x.tls.CertFile == "" {
		return func() {}, nil
	}
	x.tls.Logger = gcfg.Logger
	ts, err := tlsx.New(x.tls)
	if err != nil {
		return nil, err
	}
	st.AddCollector(ts.Collector())
	ctx, cancel := context.WithCancel(context.Background())
	go ts.Watch(ctx) // SIGHUP and file changes reload the certificate
	gcfg.TLS, gcfg.TLSAddr, gcfg.MQTTS = ts, x.tlsAddr, x.mqtts
	return func() { cancel(); ts.Close() }, nil
}

// fixPorts, in the prefork parent, picks the TLS listeners' ports once
// for all workers (SO_REUSEPORT needs the same port in each).
func (x *serveExtra) fixPorts() error {
	for _, v := range []struct{ addr, env string }{{x.tlsAddr, preforkTLSEnv}, {x.mqtts, preforkMQTTSEnv}} {
		if v.addr == "" {
			continue
		}
		a, err := fixPort(v.addr)
		if err != nil {
			return err
		}
		os.Setenv(v.env, a)
	}
	return nil
}

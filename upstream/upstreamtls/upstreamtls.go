// Package upstreamtls runs TLS from an upstream.Cluster to its https://
// backends on the engine's loops: it fills upstream.ClusterConfig.DialTLS
// with a tlsx.Client per backend host name — the client handshake on a
// bounded set of goroutines, then warren's record layer on the loop —
// with the server name (SNI) and certificate verification per host name
// (an IP literal verifies against the certificate's IP SANs), optional
// client certificates (mTLS to the backend), and session resumption
// between connections to the same host, so that pool churn (idle
// timeouts, MaxLifetime, MaxRequestsPerConn, the backend's keep-alive)
// does not cost a full handshake each time.
//
// upstream cannot import tlsx (tlsx uses upstream's token buckets); this
// package sits between them, and the commands (warren proxy, warren serve
// -upstream and -webhook) use it.
package upstreamtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/tlsx"
)

// Config is what a Dialer verifies and presents. The zero value verifies
// backends against the system roots, with no client certificate.
type Config struct {
	// CAFile is a PEM file of the roots backends' certificates must chain
	// to. Empty means the system roots.
	CAFile string
	// Insecure skips verification of the backends' certificates (logged
	// as a warning by the commands). Off by default.
	Insecure bool
	// CertFile and KeyFile are a PEM client certificate and key, sent to
	// a backend that asks for one (mTLS). Empty means none.
	CertFile, KeyFile string
	// ServerName overrides the name sent as SNI and verified, for every
	// host. Empty means each host's own name (the URL's host).
	ServerName string
	// SessionCacheSize bounds the TLS sessions kept for resumption,
	// shared by the hosts (the key is the server name). Zero means 256;
	// negative disables resumption.
	SessionCacheSize int
	// Workers bounds the handshakes in progress per host name. Zero
	// means 64.
	Workers int
	// HandshakeTimeout bounds each handshake (the pool's connect timeout
	// bounds connect and handshake together too). Zero means
	// tlsx.DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MinVersion is the lowest TLS version offered. Zero means TLS 1.2.
	MinVersion uint16
}

// DefaultSessionCacheSize is Config.SessionCacheSize's default.
const DefaultSessionCacheSize = 256

// Dialer makes the TLS handlers of a cluster's connections to https
// hosts. It is safe for concurrent use.
type Dialer struct {
	base  *tls.Config
	cfg   Config
	mu    sync.Mutex
	hosts map[string]*tlsx.Client

	full, resumed atomic.Uint64
}

// New loads cfg's files and returns a Dialer.
func New(cfg Config) (*Dialer, error) {
	base := &tls.Config{InsecureSkipVerify: cfg.Insecure, MinVersion: cfg.MinVersion}
	if base.MinVersion == 0 {
		base.MinVersion = tls.VersionTLS12
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstreamtls: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstreamtls: CA file %s: no PEM certificate", cfg.CAFile)
		}
		base.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("upstreamtls: a client certificate needs both a certificate and a key file")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("upstreamtls: client certificate: %w", err)
		}
		base.Certificates = []tls.Certificate{cert}
	}
	n := cfg.SessionCacheSize
	if n == 0 {
		n = DefaultSessionCacheSize
	}
	if n > 0 {
		base.ClientSessionCache = tls.NewLRUClientSessionCache(n)
	}
	return NewFromTLS(base, cfg), nil
}

// NewFromTLS returns a Dialer using base (not modified; each host gets a
// clone with its ServerName set, unless base or cfg sets one). Only
// cfg's ServerName, Workers and HandshakeTimeout are used.
func NewFromTLS(base *tls.Config, cfg Config) *Dialer {
	return &Dialer{base: base, cfg: cfg, hosts: map[string]*tlsx.Client{}}
}

// Handler is an upstream.ClusterConfig.DialTLS: the handler to dial a
// connection to serverName with, which hands the connection to h once
// its handshake is done.
func (d *Dialer) Handler(serverName string, h engine.Handler) engine.Handler {
	return d.client(serverName).Handler(h)
}

// client returns the host name's tlsx.Client, made at its first use.
func (d *Dialer) client(serverName string) *tlsx.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cl := d.hosts[serverName]; cl != nil {
		return cl
	}
	cfg := d.base.Clone()
	if d.cfg.ServerName != "" {
		cfg.ServerName = d.cfg.ServerName
	} else if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if cs.DidResume {
			d.resumed.Add(1)
		} else {
			d.full.Add(1)
		}
		return nil
	}
	cl := tlsx.NewClient(cfg, d.cfg.Workers, d.cfg.HandshakeTimeout)
	d.hosts[serverName] = cl
	return cl
}

// Stats are a Dialer's handshake figures.
type Stats struct {
	// Full and Resumed count the handshakes verified, by kind (failed
	// handshakes count in the cluster's tls_handshake_fail and
	// cx_connect_fail).
	Full    uint64 `json:"full"`
	Resumed uint64 `json:"resumed"`
}

// Stats returns the handshake counts so far.
func (d *Dialer) Stats() Stats {
	return Stats{Full: d.full.Load(), Resumed: d.resumed.Load()}
}

// Warn logs the warning a command owes its user when verification is
// off.
func (cfg Config) Warn(log *slog.Logger, what string) {
	if cfg.Insecure {
		log.Warn(what + ": TLS certificates of https backends are NOT verified (-upstream-insecure)")
	}
}

// Collector returns the Dialer's figures for Prometheus; names start with
// namespace (empty means "warren"):
//
//	warren_upstream_tls_handshake_kind_total{kind}  counter  verified handshakes to https backends: full, resumed
//
// A cluster's own collector counts handshakes by result
// (warren_upstream_tls_handshake_total{result}).
func (d *Dialer) Collector(namespace string) prometheus.Collector {
	if namespace == "" {
		namespace = "warren"
	}
	return &collector{d: d, desc: prometheus.NewDesc(namespace+"_upstream_tls_handshake_kind_total",
		"Verified TLS handshakes to https backends, by kind (full, resumed).", []string{"kind"}, nil)}
}

type collector struct {
	d    *Dialer
	desc *prometheus.Desc
}

func (k *collector) Describe(ch chan<- *prometheus.Desc) { ch <- k.desc }

func (k *collector) Collect(ch chan<- prometheus.Metric) {
	s := k.d.Stats()
	ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(s.Full), "full")
	ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(s.Resumed), "resumed")
}

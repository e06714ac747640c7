package admin

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// GuardConfig says what Guard checks. The zero value requires no token,
// checks the Host of requests that arrive on a loopback address and
// refuses cross-origin requests with unsafe methods.
type GuardConfig struct {
	// Addr is the address the guarded handler is served on, "host:port".
	// When Token is empty and Addr is a loopback address, every request
	// but the probes (/healthz, /readyz) must name localhost or an IP
	// literal as its Host, which defeats DNS rebinding. Empty means the
	// local address each request arrived on (http.LocalAddrContextKey); a
	// request without one, served in memory, is not host-checked.
	Addr string
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every path Open does not list. Empty means no authentication.
	Token string
	// Open reports whether path is served without the token. Nil means
	// the probes /healthz and /readyz only.
	Open func(path string) bool
}

// Guard wraps next with the admin listener's access checks, in order: the
// Host check against DNS rebinding (see GuardConfig.Addr), the refusal of
// cross-origin requests other than GET and HEAD (403), and the bearer
// token (401 with WWW-Authenticate). It is what a Server applies to its own
// handler; use it to serve another admin handler, such as the prefork
// parent's, under the same rules. The returned handler is safe for
// concurrent use.
func Guard(next http.Handler, cfg GuardConfig) http.Handler {
	token := []byte("Bearer " + cfg.Token)
	open := cfg.Open
	if open == nil {
		open = probe
	}
	fixedHost := cfg.Token == "" && cfg.Addr != "" && loopbackHost(cfg.Addr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.Token == "" && !probe(r.URL.Path) && !literalHost(r.Host) {
			check := fixedHost
			if cfg.Addr == "" {
				a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
				check = ok && isLoopback(a)
			}
			if check {
				writeError(w, http.StatusForbidden, "admin: host %q refused: use localhost or an IP address, or set a token", r.Host)
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
			writeError(w, http.StatusForbidden, "admin: cross-origin request refused")
			return
		}
		if cfg.Token != "" && !open(r.URL.Path) {
			got := []byte(r.Header.Get("Authorization"))
			if len(got) > 7 && strings.EqualFold(string(got[:7]), "bearer ") {
				copy(got, "Bearer ")
			}
			if subtle.ConstantTimeCompare(got, token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="warren admin"`)
				writeError(w, http.StatusUnauthorized, "admin: missing or wrong bearer token")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// NewHTTPServer returns an http.Server for h with the admin listener's
// limits: 10 s to read a request head, keep-alive connections closed after
// 2 min idle, 64 KiB of request header, and its errors logged at warn
// level to log (nil means slog.Default()). h is served as given: wrap it
// with Guard first.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// probe reports whether path is a health or readiness probe, served
// without a token and whatever the Host.
func probe(path string) bool { return path == "/healthz" || path == "/readyz" }

// open lists the paths a Server serves without a token: probes, and the
// dashboard's static shell, which asks for the token itself.
func open(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/", "/favicon.ico":
		return true
	}
	return strings.HasPrefix(path, "/ui/")
}

// sameOrigin reports whether a request carries no Origin (curl, scripts)
// or one naming the host it was sent to (the dashboard itself).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// literalHost reports whether the Host header names localhost or an IP
// literal: a DNS-rebinding page always names a domain of its own.
func literalHost(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	_, err := netip.ParseAddr(h)
	return err == nil
}

// loopbackHost reports whether addr's host is a loopback name or address.
func loopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return loopbackHost(a.String())
}

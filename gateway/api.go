package gateway

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
)

// apiHandlers serves the management API from a hub: a node's (Gateway),
// or a machine's Directory's (Directory.ServeAPI), whose hub answers
// lookups and lists from the directory it holds and sends a command
// straight to the node holding the device.
type apiHandlers struct {
	hub *Hub
	// drainRetry is the 503 draining answer's Retry-After in seconds:
	// the longest reconnect hint the draining node gives its devices, so a
	// client retrying then finds the device back (not a 404 offline).
	drainRetry string
}

// apiRoutes is the management API:
//
//	POST /v1/devices/{id}/commands  {"name","payload","timeout":"5s"} -> 200 {"id","status","result"}
//	                                504 no ack in time, 404 {"error":"offline"}, 400 bad body
//	POST /v1/broadcast              {"name","payload","devices":[ids]} or {"name","payload","prefix"} -> 202 {"sent","offline"}
//	GET  /v1/devices/{id}           -> state, node, protocol, remote, connected_at, last_seen; 404 unknown
//	GET  /v1/devices?state=online&prefix=&limit=&cursor=  -> {"devices":[...],"next_cursor":""}
//
// With token set every route requires it as a bearer token (401
// otherwise).
func apiRoutes(hub *Hub, token string, drainRetry time.Duration) *http1.Router {
	a := &apiHandlers{hub: hub, drainRetry: strconv.Itoa(int(max(1, (drainRetry+time.Second-1)/time.Second)))}
	r := http1.NewRouter()
	if token != "" {
		r.Use(func(next http1.Handler) http1.Handler {
			return http1.HandlerFunc(func(c *http1.Ctx) {
				got, ok := BearerToken(c.Header("Authorization"))
				if !ok || subtle.ConstantTimeCompare(got, []byte(token)) != 1 {
					c.SetHeader("WWW-Authenticate", `Bearer realm="warren"`)
					writeJSON(c, 401, map[string]string{"error": "unauthorized"})
					return
				}
				next.ServeHTTP1(c)
			})
		})
	}
	r.HandleFunc("POST /v1/devices/{id}/commands", a.command)
	r.HandleFunc("POST /v1/broadcast", a.broadcast)
	r.HandleFunc("GET /v1/devices/{id}", a.device)
	r.HandleFunc("GET /v1/devices", a.devices)
	return r
}

func writeJSON(c *http1.Ctx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"error":"encoding"}`)
	}
	c.SetStatus(status)
	c.SetHeader("Content-Type", "application/json")
	c.Write(b)
	c.Write([]byte{'\n'})
}

// badCommandName is the 400's error for a name ValidCommandName refuses.
const badCommandName = "name must be 1 to 128 printable ASCII characters without a space or any of . * > / + #"

type commandRequest struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload"`
	Timeout string          `json:"timeout"`
}

// command sends a command and answers with the device's ack. It detaches
// the request (http1.Ctx.Detach): nothing waits for the ack — no worker,
// no goroutine — and the answer goes out when the ack, the timeout or the
// holding node's reply arrives, however many commands are in flight
// (bounded by MaxPending, 503 past it).
func (a *apiHandlers) command(c *http1.Ctx) {
	id := c.Param("id")
	if !ValidDeviceID(id) {
		writeJSON(c, 400, map[string]string{"error": "bad device id"})
		return
	}
	var req commandRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.Name == "" {
		writeJSON(c, 400, map[string]string{"error": "body must be JSON with a name"})
		return
	}
	if !ValidCommandName(req.Name) {
		writeJSON(c, 400, map[string]string{"error": badCommandName})
		return
	}
	var timeout time.Duration
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			writeJSON(c, 400, map[string]string{"error": "timeout must be a positive duration such as \"5s\""})
			return
		}
		timeout = d
	}
	ctx, cancel := drainProof(c.Context())
	d, err := c.Detach()
	if err != nil { // not for this route (no streamed body); wait here
		defer cancel()
		ack, err := a.hub.Command(ctx, id, req.Name, req.Payload, timeout)
		a.writeCommandResult(c, ack, err)
		return
	}
	a.hub.CommandAsync(ctx, id, req.Name, req.Payload, timeout, func(ack Ack, err error) {
		cancel()
		a.writeCommandResult(c, ack, err)
		d.Finish()
	})
}

// writeCommandResult answers a command request with its outcome.
func (a *apiHandlers) writeCommandResult(c *http1.Ctx, ack Ack, err error) {
	switch {
	case err == nil:
		writeJSON(c, 200, ack)
	case errors.Is(err, ErrOffline):
		writeJSON(c, 404, map[string]string{"error": "offline"})
	case errors.Is(err, ErrCommandTimeout):
		writeJSON(c, 504, map[string]string{"error": "timeout", "id": ack.ID})
	case errors.Is(err, ErrDraining):
		// The node holding the device drains: the device reconnects
		// elsewhere (or to it restarted) within its retry hint.
		c.SetHeader("Retry-After", a.drainRetry)
		writeJSON(c, 503, map[string]string{"error": "draining"})
	case errors.Is(err, ErrBadCommandName):
		writeJSON(c, 400, map[string]string{"error": badCommandName})
	case errors.Is(err, ErrTooManyPending), errors.Is(err, ErrDirectory):
		writeJSON(c, 503, map[string]string{"error": err.Error()})
	default:
		writeJSON(c, 502, map[string]string{"error": err.Error()})
	}
}

// drainProof returns a context that ends with the request's, except when
// the request's ends because the engine started draining
// (engine.ErrServerClosed): a command in flight then still waits for its
// ack or its timeout (200 or 504), within the drain's deadline, rather
// than failing at once. The client going away still ends it.
func drainProof(req context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(req))
	stop := context.AfterFunc(req, func() {
		if cause := context.Cause(req); !errors.Is(cause, engine.ErrServerClosed) {
			cancel(cause)
		}
	})
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

type broadcastRequest struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload"`
	Devices []string        `json:"devices"`
	Prefix  string          `json:"prefix"`
}

func (a *apiHandlers) broadcast(c *http1.Ctx) {
	var req broadcastRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.Name == "" || (len(req.Devices) == 0 && req.Prefix == "") {
		writeJSON(c, 400, map[string]string{"error": "body must be JSON with a name and devices or a prefix"})
		return
	}
	if len(req.Devices) > 0 && req.Prefix != "" {
		// The prefix would win and the listed devices it does not match
		// would be dropped without a count: refuse rather than guess.
		writeJSON(c, 400, map[string]string{"error": "devices or a prefix, not both"})
		return
	}
	if !ValidCommandName(req.Name) {
		writeJSON(c, 400, map[string]string{"error": badCommandName})
		return
	}
	writeJSON(c, 202, a.hub.Broadcast(req.Name, req.Payload, req.Devices, req.Prefix))
}

func (a *apiHandlers) device(c *http1.Ctx) {
	d, err := a.hub.lookup(c.Param("id"))
	if err != nil {
		writeJSON(c, 503, map[string]string{"error": err.Error()})
		return
	}
	if d == nil {
		writeJSON(c, 404, map[string]string{"error": "unknown", "device": c.Param("id")})
		return
	}
	writeJSON(c, 200, d)
}

func (a *apiHandlers) devices(c *http1.Ctx) {
	if st := string(c.Query("state")); st != "" && st != "online" {
		writeJSON(c, 400, map[string]string{"error": "state must be online: the cluster tracks connected devices"})
		return
	}
	limit := 100
	if v := c.Query("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n <= 0 {
			writeJSON(c, 400, map[string]string{"error": "limit must be a positive number"})
			return
		}
		limit = min(n, 10_000)
	}
	devs, next, err := a.hub.list(string(c.Query("prefix")), string(c.Query("cursor")), limit)
	if err != nil {
		writeJSON(c, 503, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(c, 200, map[string]any{"devices": devs, "next_cursor": next})
}

// APIConfig configures a management API that a Directory serves
// (Directory.ServeAPI).
type APIConfig struct {
	// Addr is the API listener's address, such as "127.0.0.1:8081"; port
	// 0 picks a free one. Required.
	Addr string
	// Token, when set, is required on every request as
	// "Authorization: Bearer <Token>" (401 otherwise). Empty: none.
	Token string
	// HTTP configures the API's HTTP/1.1 server. The zero value is ready
	// to use (http1.Config's defaults).
	HTTP http1.Config
	// DrainRetry is the Retry-After of a command's 503 draining: the
	// longest reconnect hint the nodes give their devices
	// (Config.RetryHintMin + RetryHintJitter). Zero means 11 s, the
	// hints' defaults.
	DrainRetry time.Duration
}

// API is the management API served from a machine's Directory: the same
// routes, answers and status codes as a Gateway's API listener
// (docs/gateway.md, "Management API"), answered where the directory is
// held. `warren serve -procs N` serves it in the prefork parent, so that a
// command goes from the API straight to the worker holding the device,
// and a lookup or a list reads the directory in-process.
//
// Handlers run on the engine's worker pool: a command that waits for its
// ack never stalls the engine's loop. Its methods are safe for concurrent
// use.
type API struct {
	srv *http1.Server
	ln  *engine.Listener
}

// ServeAPI opens the management API on eng (started; one loop is plenty)
// at cfg.Addr, answered from the directory: a command is sent to the node
// holding the device (wherever it is in the cluster) and waits for its
// ack; a broadcast fans out to the nodes; a lookup or a list reads the
// directory. The command and broadcast metrics are the directory's
// (Directory.Collector). The engine's owner drains the API with
// engine.Shutdown (answers in flight finish) and then calls Close.
func (d *Directory) ServeAPI(eng *engine.Engine, cfg APIConfig) (*API, error) {
	if cfg.Addr == "" {
		return nil, errors.New("gateway: the API needs an address")
	}
	if cfg.HTTP.Logger == nil {
		cfg.HTTP.Logger = d.h.log
	}
	srv, err := http1.NewServer(eng, cfg.HTTP, apiRoutes(d.h, cfg.Token, cmp.Or(cfg.DrainRetry, defaultRetryHintMin+defaultRetryHintJitter)))
	if err != nil {
		return nil, err
	}
	ln, err := srv.Listen(cfg.Addr)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("gateway: API listener %s: %w", cfg.Addr, err)
	}
	return &API{srv: srv, ln: ln}, nil
}

// Addr returns the API listener's address.
func (a *API) Addr() string { return a.ln.Addr().String() }

// Collector returns the API's HTTP metrics (warren_http_*).
func (a *API) Collector() prometheus.Collector { return a.srv.Collector("") }

// Close stops the API server's background work. It does not close
// connections: the engine's owner does, with Shutdown.
func (a *API) Close() { a.srv.Close() }

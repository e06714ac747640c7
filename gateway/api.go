package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/warrenhq/warren/http1"
)

// apiRoutes is the management API:
//
//	POST /v1/devices/{id}/commands  {"name","payload","timeout":"5s"} -> 200 {"id","status","result"}
//	                                504 no ack in time, 404 {"error":"offline"}, 400 bad body
//	POST /v1/broadcast              {"name","payload","devices":[ids]} or {"name","payload","prefix"} -> 202 {"sent","offline"}
//	GET  /v1/devices/{id}           -> state, node, protocol, remote, connected_at, last_seen; 404 unknown
//	GET  /v1/devices?state=online&prefix=&limit=&cursor=  -> {"devices":[...],"next_cursor":""}
func (g *Gateway) apiRoutes() *http1.Router {
	r := http1.NewRouter()
	if tok := g.cfg.APIToken; tok != "" {
		r.Use(func(next http1.Handler) http1.Handler {
			return http1.HandlerFunc(func(c *http1.Ctx) {
				got, ok := BearerToken(c.Header("Authorization"))
				if !ok || subtle.ConstantTimeCompare(got, []byte(tok)) != 1 {
					c.SetHeader("WWW-Authenticate", `Bearer realm="warren"`)
					writeJSON(c, 401, map[string]string{"error": "unauthorized"})
					return
				}
				next.ServeHTTP1(c)
			})
		})
	}
	r.HandleFunc("POST /v1/devices/{id}/commands", g.apiCommand)
	r.HandleFunc("POST /v1/broadcast", g.apiBroadcast)
	r.HandleFunc("GET /v1/devices/{id}", g.apiDevice)
	r.HandleFunc("GET /v1/devices", g.apiDevices)
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

type commandRequest struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload"`
	Timeout string          `json:"timeout"`
}

// apiCommand sends a command and answers with the device's ack. It runs on
// the worker pool: it waits for the ack.
func (g *Gateway) apiCommand(c *http1.Ctx) {
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
	var timeout time.Duration
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			writeJSON(c, 400, map[string]string{"error": "timeout must be a positive duration such as \"5s\""})
			return
		}
		timeout = d
	}
	ack, err := g.hub.Command(c.Context(), id, req.Name, req.Payload, timeout)
	switch {
	case err == nil:
		writeJSON(c, 200, ack)
	case errors.Is(err, ErrOffline):
		writeJSON(c, 404, map[string]string{"error": "offline"})
	case errors.Is(err, ErrCommandTimeout):
		writeJSON(c, 504, map[string]string{"error": "timeout", "id": ack.ID})
	case errors.Is(err, ErrTooManyPending), errors.Is(err, ErrDirectory):
		writeJSON(c, 503, map[string]string{"error": err.Error()})
	default:
		writeJSON(c, 502, map[string]string{"error": err.Error()})
	}
}

type broadcastRequest struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload"`
	Devices []string        `json:"devices"`
	Prefix  string          `json:"prefix"`
}

func (g *Gateway) apiBroadcast(c *http1.Ctx) {
	var req broadcastRequest
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.Name == "" || (len(req.Devices) == 0 && req.Prefix == "") {
		writeJSON(c, 400, map[string]string{"error": "body must be JSON with a name and devices or a prefix"})
		return
	}
	writeJSON(c, 202, g.hub.Broadcast(req.Name, req.Payload, req.Devices, req.Prefix))
}

func (g *Gateway) apiDevice(c *http1.Ctx) {
	d, err := g.hub.lookup(c.Param("id"))
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

func (g *Gateway) apiDevices(c *http1.Ctx) {
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
	devs, next, err := g.hub.list(string(c.Query("prefix")), string(c.Query("cursor")), limit)
	if err != nil {
		writeJSON(c, 503, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(c, 200, map[string]any{"devices": devs, "next_cursor": next})
}

package gateway

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/websocket"
)

// WebSocket close codes of the device protocol (RFC 6455 leaves 4000-4999
// to applications). Drain uses 1001 and abuse 1008, the standard codes.
const (
	CloseReplaced     = 4000 // another connection took the device's session
	CloseTokenExpired = 4001 // the token's exp passed while connected
	CloseRateLimited  = 4002 // kept flooding telemetry far past its DeviceLimits
	CloseCertRevoked  = 4003 // a revocation list loaded since it connected names its client certificate
)

// frame is a device's text frame.
type frame struct {
	Type   string          `json:"type"`
	Data   json.RawMessage `json:"data"`
	ID     string          `json:"id"`
	Status string          `json:"status"`
	Result json.RawMessage `json:"result"`
}

// outCommand is a command frame to a device.
type outCommand struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload"`
}

// errFrame tells a device what was wrong with its frame.
type errFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id,omitempty"`
	// RetryAfterMS is, for code rate_limited, how long until the device
	// may publish again.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// wsDevices serves devices on WebSocket (GET /v1/connect): it
// authenticates the upgrade, registers each device with the hub, turns its
// frames into telemetry and acks, and is the hub's Transport for it.
type wsDevices struct {
	hub          *Hub
	auth         Authenticator
	maxBad       int32
	badWindow    time.Duration
	retryMin     time.Duration
	retryJitter  time.Duration
	now          func() time.Time
	server       *websocket.Server
	refusedAuth  atomic.Uint64
	refusedRoles atomic.Uint64
	certs        *certAuth
}

// wsDevice is one device connection: the hub's Transport, with the hub's
// session in it (one 80-byte allocation per device; TestDirEntry checks
// the size). Until OnOpen hands it to the hub, s holds only the device id
// and the token's expiry that accept found.
type wsDevice struct {
	s      Session
	c      *websocket.Conn
	reason atomic.Pointer[string] // the gateway's reason for closing, if it closes
}

// newWSDevice returns the transport of c for ident.
func newWSDevice(c *websocket.Conn, ident *Identity) *wsDevice {
	dev := &wsDevice{c: c}
	dev.s.Device = ident.Device
	if !ident.Expires.IsZero() {
		dev.s.setExpires(ident.Expires)
	}
	return dev
}

// session returns the device's hub session, or nil before OnOpen.
func (dev *wsDevice) session() *Session {
	if dev.s.t == nil {
		return nil
	}
	return &dev.s
}

var (
	_ Transport                    = (*wsDevice)(nil)
	_ websocket.Handler            = (*wsDevices)(nil)
	_ websocket.OpenHandler        = (*wsDevices)(nil)
	_ websocket.CloseHandler       = (*wsDevices)(nil)
	_ engine.CloseDetail           = websocket.CloseCode(0)
	_ http1.Handler                = (*websocket.Server)(nil)
	_ func(*websocket.Conn) string = (*wsDevices)(nil).goingAway
)

func newWSDevices(hub *Hub, auth Authenticator, cfg Config, now func() time.Time) *wsDevices {
	d := &wsDevices{hub: hub, auth: auth, maxBad: int32(min(cfg.MaxBadFrames, MaxBadFramesLimit)),
		badWindow: cfg.BadFrameWindow, retryMin: cfg.RetryHintMin,
		retryJitter: cfg.RetryHintJitter, now: now}
	wcfg := cfg.WebSocket
	wcfg.Inline = true
	wcfg.Accept = d.accept
	wcfg.GoingAway = d.goingAway
	wcfg.DrainHold = func(c *websocket.Conn) bool {
		dev, _ := c.Context().(*wsDevice)
		return dev != nil && dev.session() != nil && d.hub.drainHold(&dev.s)
	}
	wcfg.Label = func(c *websocket.Conn) string {
		if dev, ok := c.Context().(*wsDevice); ok {
			return dev.s.Device
		}
		return ""
	}
	if wcfg.CheckOrigin == nil {
		// Devices are not browsers on the gateway's origin; a browser's
		// cross-origin upgrade still needs its token.
		wcfg.CheckOrigin = func([]byte, *http1.Ctx) bool { return true }
	}
	d.server = websocket.New(wcfg, d)
	return d
}

// accept authenticates an upgrade: the token comes in Authorization:
// Bearer or, for browsers, ?token=.
func (d *wsDevices) accept(r *http1.Ctx, c *websocket.Conn) bool {
	tok, ok := BearerToken(r.Header("Authorization"))
	if !ok {
		tok = r.Query("token")
	}
	if cert := certIdentity(r.Conn()); cert.id != "" {
		ident, ok := d.acceptCert(r, cert, tok)
		if ok {
			c.SetContext(newWSDevice(c, &ident))
		}
		return ok
	}
	ident, err := d.auth.Authenticate(string(tok), d.now())
	if err != nil {
		d.refusedAuth.Add(1)
		d.hub.m.authFailures.Add(1)
		r.SetStatus(401)
		r.SetHeader("Content-Type", "application/json")
		b, _ := json.Marshal(map[string]string{"error": AuthReason(err), "message": err.Error()})
		r.Write(b)
		return false
	}
	if ident.Role != RoleDevice {
		d.refusedRoles.Add(1)
		r.SetStatus(403)
		r.SetHeader("Content-Type", "application/json")
		r.WriteString(`{"error":"forbidden","message":"only device tokens connect at /v1/connect"}`)
		return false
	}
	c.SetContext(newWSDevice(c, &ident))
	return true
}

// OnOpen registers the device with the hub.
func (d *wsDevices) OnOpen(c *websocket.Conn) {
	dev := c.Context().(*wsDevice)
	d.hub.attach(&dev.s, dev.s.Identity(), dev)
}

// OnMessage turns a frame into telemetry or an ack.
func (d *wsDevices) OnMessage(c *websocket.Conn, op websocket.Opcode, data []byte) {
	dev, _ := c.Context().(*wsDevice)
	if dev == nil || dev.session() == nil {
		return
	}
	s := &dev.s
	now := d.now()
	s.Touch(now)
	if op == websocket.OpBinary {
		d.hub.Telemetry(s, data, now)
		return
	}
	if v := plainTelemetry(data); v != nil {
		d.hub.Telemetry(s, v, now)
		return
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		d.bad(dev, "bad_json", "frame is not a JSON object: "+err.Error(), "")
		return
	}
	switch f.Type {
	case "telemetry":
		if len(f.Data) == 0 {
			d.bad(dev, "bad_telemetry", "telemetry needs a data field", "")
			return
		}
		d.hub.Telemetry(s, f.Data, now)
	case "ack":
		if f.ID == "" || (f.Status != "ok" && f.Status != "error") {
			d.bad(dev, "bad_ack", `an ack needs an id and a status of "ok" or "error"`, f.ID)
			return
		}
		if !d.hub.Ack(s, Ack{ID: f.ID, Status: f.Status, Result: f.Result}) && !d.hub.BroadcastAck(f.ID) {
			// Refused and counted, but not towards the abuse close: a
			// well-behaved device sends one when its ack comes after
			// the command's timeout, or after it moved to another node.
			d.refuse(dev, "unknown_ack", "no command with this id is waiting for an ack", f.ID)
		}
	default:
		d.bad(dev, "unknown_type", `type must be "telemetry" or "ack"`, "")
	}
}

// telemetryHead is how a telemetry frame usually starts.
const telemetryHead = `{"type":"telemetry","data":`

// plainTelemetry returns the data of a frame that is exactly
// {"type":"telemetry","data":<value>} (the usual telemetry frame) without
// decoding the frame, or nil for any other frame, which OnMessage
// decodes in full. The value is checked to be valid JSON: a frame with
// more fields after data does not pass (its "value" would run on past
// the comma), so both paths take the same frames alike.
func plainTelemetry(b []byte) []byte {
	if !bytes.HasPrefix(b, []byte(telemetryHead)) {
		return nil
	}
	v := bytes.TrimRight(b[len(telemetryHead):], " \t\r\n")
	if len(v) == 0 || v[len(v)-1] != '}' {
		return nil
	}
	v = bytes.Trim(v[:len(v)-1], " \t\r\n")
	if len(v) == 0 || !json.Valid(v) {
		return nil
	}
	return v
}

// bad answers a refused frame with an error frame, and closes a device
// that keeps sending them.
func (d *wsDevices) bad(dev *wsDevice, code, msg, id string) {
	d.refuse(dev, code, msg, id)
	if n := dev.s.addBad(d.now(), d.badWindow); d.maxBad > 0 && n >= d.maxBad {
		dev.closeWith(ReasonAbuse, websocket.ClosePolicyViolation, "too many bad frames")
	}
}

// refuse answers a refused frame with an error frame and counts it in
// the bad frames metric.
func (d *wsDevices) refuse(dev *wsDevice, code, msg, id string) {
	d.hub.m.badFrames.Add(1)
	b, _ := json.Marshal(errFrame{Type: "error", Code: code, Message: msg, ID: id})
	dev.c.WriteMessage(websocket.OpText, b)
}

// rateLimited tells the device its telemetry is being dropped (the hub
// calls it at most once per token interval of its DeviceLimits).
func (dev *wsDevice) rateLimited(wait time.Duration) {
	b, _ := json.Marshal(errFrame{Type: "error", Code: ReasonRateLimited,
		Message: "telemetry over the device's rate limit is dropped", RetryAfterMS: max(1, wait.Milliseconds())})
	dev.c.WriteMessage(websocket.OpText, b)
}

// OnClose unregisters the device.
func (d *wsDevices) OnClose(c *websocket.Conn, reason engine.CloseReason, code uint16) {
	dev, _ := c.Context().(*wsDevice)
	if dev == nil || dev.session() == nil {
		return
	}
	why := ReasonDisconnected
	switch {
	case dev.reason.Load() != nil:
		why = *dev.reason.Load()
	case reason == engine.ReasonShutdown:
		why = ReasonShutdown
	case reason != engine.ReasonPeerClosed && reason != engine.ReasonLocal:
		why = reason.String()
	}
	d.hub.Disconnect(&dev.s, why)
}

// goingAway is the close 1001 reason of a drain: a retry hint with jitter,
// so devices spread their reconnects.
func (d *wsDevices) goingAway(*websocket.Conn) string {
	delay := d.retryMin
	if d.retryJitter > 0 {
		delay += rand.N(d.retryJitter)
	}
	return "server shutting down; retry-after=" + strconv.Itoa(int(delay/time.Millisecond)) + "ms"
}

func (dev *wsDevice) Protocol() string       { return websocket.ProtocolName }
func (dev *wsDevice) Remote() netip.AddrPort { return dev.c.RemoteAddr() }
func (dev *wsDevice) PauseRead()             { dev.c.Engine().PauseRead() }
func (dev *wsDevice) ResumeRead()            { dev.c.Engine().ResumeRead() }

// SendCommand writes the command frame; it never blocks (the engine queues
// it, bounded by its slow-consumer policy).
func (dev *wsDevice) SendCommand(cmd Command) error {
	payload := cmd.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	b, err := json.Marshal(outCommand{Type: "command", ID: cmd.ID, Name: cmd.Name, Payload: payload})
	if err != nil {
		return err
	}
	return dev.c.WriteMessage(websocket.OpText, b)
}

// Close closes the connection with the gateway's reason and its close
// code.
func (dev *wsDevice) Close(reason string) {
	code := uint16(websocket.ClosePolicyViolation)
	switch reason {
	case ReasonReplaced:
		code = CloseReplaced
	case ReasonTokenExpired:
		code = CloseTokenExpired
	case ReasonShutdown:
		// The drain let go of a device it kept open for its commands:
		// the drain's own goodbye, 1001 with the retry hint.
		r := reason
		dev.reason.CompareAndSwap(nil, &r)
		dev.c.GoingAway()
		return
	case ReasonRateLimited:
		code = CloseRateLimited
	case ReasonCertRevoked:
		code = CloseCertRevoked
	}
	dev.closeWith(reason, code, reason)
}

func (dev *wsDevice) closeWith(reason string, code uint16, text string) {
	r := reason
	dev.reason.CompareAndSwap(nil, &r)
	dev.c.Close(code, text)
}

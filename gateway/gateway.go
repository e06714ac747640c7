package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/mqtt"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/websocket"
)

// Gateway is a device gateway node on an engine: devices on one listener,
// the management API on another, a hub on NATS between them.
type Gateway struct {
	cfg    Config
	eng    *engine.Engine
	bus    *Bus
	hub    *Hub
	ws     *wsDevices
	mq     *mqttDevices // nil unless Config.MQTT is set
	mqLn   *engine.Listener
	devSrv *http1.Server
	apiSrv *http1.Server
	devLn  *engine.Listener
	apiLn  *engine.Listener
	tlsLn  *engine.Listener // https + wss (Config.TLSAddr)
	mqsLn  *engine.Listener // MQTT over TLS (Config.MQTTS)
	certs  *certAuth
	up     *upstream.Cluster // Config.Upstream
	px     *proxy.Proxy
	hook   *webhook // Config.Webhook
	// stopRevoked unregisters closeRevoked from Config.TLS.
	stopRevoked func()
}

// New starts a gateway node on eng (started, with no listener needed):
// connects to NATS (or starts the embedded server), then opens the device
// and API listeners.
func New(eng *engine.Engine, cfg Config) (*Gateway, error) {
	cfg = cfg.withDefaults()
	if cfg.Node == "" {
		host, _ := os.Hostname()
		cfg.Node = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	g := &Gateway{cfg: cfg, eng: eng, certs: &certAuth{log: cfg.Logger}}
	if cfg.MQTTS != "" && (cfg.TLS == nil || cfg.MQTT == "") {
		return nil, fmt.Errorf("gateway: an MQTTS listener needs TLS and MQTT")
	}
	if cfg.TLSAddr != "" && cfg.TLS == nil {
		return nil, fmt.Errorf("gateway: a TLS device listener needs TLS (a certificate)")
	}
	if cfg.Auth == nil {
		secret, created, err := LoadOrCreateSecret(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		if created {
			cfg.Logger.Info("gateway: generated a JWT secret; sign device tokens with `warren token -device ID`",
				"file", cfg.DataDir+"/"+SecretFile)
		}
		g.cfg.Auth = NewHMACAuth(secret)
	}
	bc := cfg.Bus
	if bc.Node == "" {
		bc.Node = cfg.Node
	}
	if bc.Logger == nil {
		bc.Logger = cfg.Logger
	}
	bc.OnReconnect = func() {
		if g.hub != nil {
			g.hub.Reannounce()
		}
	}
	if bc.MaxPayload == 0 {
		bc.MaxPayload = EmbeddedMaxPayload(&cfg)
	}
	bus, err := StartBus(bc)
	if err != nil {
		return nil, err
	}
	g.bus = bus
	fitPayload(&cfg, int(bus.Conn().MaxPayload()), cfg.Logger)
	g.cfg.WebSocket.MaxMessageSize, g.cfg.MQTTConfig.Limits.MaxPacketSize = cfg.WebSocket.MaxMessageSize, cfg.MQTTConfig.Limits.MaxPacketSize
	hc := HubConfig{Node: cfg.Node, Now: eng.Now, CommandTimeout: cfg.CommandTimeout,
		MaxCommandTimeout: cfg.MaxCommandTimeout, MaxPending: cfg.MaxPending, Logger: cfg.Logger,
		Directory: cfg.Directory, Limits: cfg.DeviceLimits, DrainTimeout: cfg.DrainTimeout,
		MaxHeldBytes: cfg.DeviceHeldBytes, HandoffWait: cfg.HandoffWait}
	if cfg.Webhook.URL != "" {
		wc := cfg.Webhook
		if wc.Cluster.Logger == nil {
			wc.Cluster.Logger = cfg.Logger // the webhook cluster's ejections and breaker log with the gateway's
		}
		if g.hook, err = newWebhook(eng, cfg.Node, wc); err != nil {
			bus.Close()
			return nil, err
		}
		hc.OnTelemetry = g.hook.offer
	}
	g.hub = NewHub(hc, bus)
	context.AfterFunc(eng.Context(), g.hub.Drain) // the engine's Shutdown began
	fail := func(err error) (*Gateway, error) {
		g.closeParts()
		return nil, err
	}
	if err := g.hub.Start(); err != nil {
		return fail(err)
	}
	if cfg.TLS != nil {
		g.stopRevoked = cfg.TLS.OnRevocationReload(g.closeRevoked)
	}
	g.ws = newWSDevices(g.hub, g.cfg.Auth, cfg, eng.Now)
	g.ws.certs = g.certs
	devRoutes := http1.NewRouter()
	devRoutes.Handle("GET /v1/connect", g.ws.server.Handler())
	if len(cfg.Upstream) > 0 {
		cc := cfg.UpstreamCluster
		cc.Hosts = cfg.Upstream
		if cc.Name == "" {
			cc.Name = "upstream"
		}
		if cc.Logger == nil {
			cc.Logger = cfg.Logger
		}
		if g.up, err = upstream.NewCluster(eng, cc); err != nil {
			return fail(fmt.Errorf("gateway: upstream: %w", err))
		}
		pc := cfg.UpstreamProxy
		if pc.Logger == nil {
			pc.Logger = cfg.Logger
		}
		g.px = proxy.New(eng, g.up, pc)
		devRoutes.NotFound = g.px.Forward()
	}
	if cfg.MQTT != "" {
		g.mq = newMQTTDevices(g.hub, bus, g.cfg.Auth, cfg, eng.Now)
		g.mq.certs = g.certs
		devRoutes.Handle("GET /mqtt", g.mq.broker.WebSocketHandler())
		if err := g.mq.start(); err != nil {
			return fail(err)
		}
		if g.mqLn, err = g.mq.broker.Listen(eng, cfg.MQTT); err != nil {
			return fail(fmt.Errorf("gateway: MQTT listener %s: %w", cfg.MQTT, err))
		}
		if cfg.MQTTS != "" {
			if g.mqsLn, err = eng.Listen(cfg.MQTTS,
				cfg.TLS.HandlerALPN(map[string]engine.Handler{"mqtt": g.mq.broker.Handler()}, g.mq.broker.Handler())); err != nil {
				return fail(fmt.Errorf("gateway: MQTTS listener %s: %w", cfg.MQTTS, err))
			}
		}
	}
	if g.devSrv, err = http1.NewServer(eng, cfg.HTTP, devRoutes); err != nil {
		return fail(err)
	}
	if g.devLn, err = g.devSrv.Listen(cfg.Addr); err != nil {
		return fail(fmt.Errorf("gateway: device listener %s: %w", cfg.Addr, err))
	}
	if cfg.TLSAddr != "" {
		if g.tlsLn, err = g.devSrv.ListenWrapped(cfg.TLSAddr, func(h engine.Handler) engine.Handler {
			return cfg.TLS.HandlerALPN(map[string]engine.Handler{"http/1.1": h}, h)
		}); err != nil {
			return fail(fmt.Errorf("gateway: TLS device listener %s: %w", cfg.TLSAddr, err))
		}
	}
	if cfg.API != "-" {
		if g.apiSrv, err = http1.NewServer(eng, cfg.HTTP, apiRoutes(g.hub, cfg.APIToken, cfg.RetryHintMin+cfg.RetryHintJitter)); err != nil {
			return fail(err)
		}
		if g.apiLn, err = g.apiSrv.Listen(cfg.API); err != nil {
			return fail(fmt.Errorf("gateway: API listener %s: %w", cfg.API, err))
		}
	}
	return g, nil
}

// closeParts releases what New started, in reverse order.
func (g *Gateway) closeParts() {
	if g.stopRevoked != nil {
		g.stopRevoked()
	}
	if g.mq != nil {
		g.mq.close()
	}
	if g.px != nil {
		g.px.Close()
	}
	if g.up != nil {
		g.up.Close()
	}
	if g.hub != nil {
		g.hub.Close()
	}
	if g.hook != nil {
		g.hook.close()
	}
	g.bus.Close()
}

// TLSAddr returns the https + wss device listener's address, or "" when
// it is disabled.
func (g *Gateway) TLSAddr() string {
	if g.tlsLn == nil {
		return ""
	}
	return g.tlsLn.Addr().String()
}

// MQTTSAddr returns the MQTT over TLS listener's address, or "" when it
// is disabled.
func (g *Gateway) MQTTSAddr() string {
	if g.mqsLn == nil {
		return ""
	}
	return g.mqsLn.Addr().String()
}

// Hub returns the node's hub.
func (g *Gateway) Hub() *Hub { return g.hub }

// Bus returns the node's NATS bus.
func (g *Gateway) Bus() *Bus { return g.bus }

// Node returns the node's name.
func (g *Gateway) Node() string { return g.cfg.Node }

// DeviceAddr returns the device listener's address.
func (g *Gateway) DeviceAddr() string { return g.devLn.Addr().String() }

// MQTTAddr returns the MQTT listener's address, or "" when MQTT is
// disabled.
func (g *Gateway) MQTTAddr() string {
	if g.mqLn == nil {
		return ""
	}
	return g.mqLn.Addr().String()
}

// MQTT returns the node's MQTT broker, or nil when MQTT is disabled.
func (g *Gateway) MQTT() *mqtt.Server {
	if g.mq == nil {
		return nil
	}
	return g.mq.broker
}

// APIAddr returns the API listener's address, or "" when disabled.
func (g *Gateway) APIAddr() string {
	if g.apiLn == nil {
		return ""
	}
	return g.apiLn.Addr().String()
}

// Collectors returns the metrics of the gateway and of the protocols it
// runs, for the admin listener.
func (g *Gateway) Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{g.hub.Collector(), g.devSrv.Collector(""), g.ws.server.Collector("")}
	if g.mq != nil {
		cs = append(cs, g.mq.broker.Collector(""), g.mq.collector())
	}
	if g.cfg.TLS != nil {
		cs = append(cs, g.certs.collector())
	}
	if g.px != nil {
		cs = append(cs, g.px.Collector(""), g.up.Collector(""))
	}
	if g.hook != nil {
		cs = append(cs, g.hook.collectors()...)
	}
	return cs
}

// Close stops the hub and the bus; call it after the engine has shut down
// (its drain sends devices their goodbye and presence offline).
func (g *Gateway) Close() {
	g.devSrv.Close()
	if g.apiSrv != nil {
		g.apiSrv.Close()
	}
	g.closeParts()
}

// Shutdown drains the engine (devices get close 1001 with a retry hint,
// commands in flight finish or time out) within ctx, then closes the
// gateway.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.eng.Shutdown(ctx)
	g.Close()
	return err
}

// natsHeadroom is what a device's message may need in NATS beyond its own
// bytes: the telemetry headers (device, node, time) and the MQTT bridge's
// (QoS, retain flag, 5.0 properties within the packet's own size).
const natsHeadroom = 64 << 10

// wsMessageMax is the WebSocket message bound cfg sets, its default
// applied (an unbounded one counts as 64 MiB, NATS's largest).
func wsMessageMax(cfg *Config) int {
	switch ws := cfg.WebSocket.MaxMessageSize; {
	case ws == 0:
		return websocket.DefaultMaxMessageSize
	case ws < 0:
		return 64 << 20
	default:
		return ws
	}
}

// mqttPacketMax is the MQTT packet bound cfg sets, its default applied.
func mqttPacketMax(cfg *Config) int {
	if mq := cfg.MQTTConfig.Limits.MaxPacketSize; mq > 0 {
		return mq
	}
	return mqtt.DefaultMaxPacketSize
}

// deviceMessageMax is the largest message a device may send under cfg:
// a WebSocket message or, with MQTT on, an MQTT packet.
func deviceMessageMax(cfg *Config) int {
	if cfg.MQTT != "" {
		return max(wsMessageMax(cfg), mqttPacketMax(cfg))
	}
	return wsMessageMax(cfg)
}

// EmbeddedMaxPayload is the max_payload an embedded NATS server needs for
// cfg's devices: their largest message (a WebSocket message or, with MQTT
// on, an MQTT packet) plus the room the gateway's headers and subject
// take, and at least NATS's default of 1 MiB. New gives its own embedded
// server this; a prefork parent that runs the server its workers share
// (warren serve -procs) sets its BusConfig.MaxPayload to it, so that the
// workers' limits fit with nothing lowered.
func EmbeddedMaxPayload(cfg *Config) int { return max(1<<20, deviceMessageMax(cfg)+natsHeadroom) }

// fitPayload lowers the device limits to what NATS carries (its
// max_payload less natsHeadroom), so that a message within them is never
// one NATS refuses: it is refused by its own protocol instead (1009,
// Maximum Packet Size). An external cluster's max_payload is its own; the
// embedded server's follows the limits (New).
func fitPayload(cfg *Config, maxPayload int, log *slog.Logger) {
	if maxPayload <= natsHeadroom {
		return // not known (not connected yet): nothing to fit to
	}
	limit := maxPayload - natsHeadroom
	if wsMessageMax(cfg) > limit {
		log.Warn("gateway: NATS carries smaller messages than -ws-max-message allows; devices' WebSocket messages are limited to what it carries",
			"nats_max_payload", maxPayload, "ws_max_message", limit)
		cfg.WebSocket.MaxMessageSize = limit
	}
	if cfg.MQTT != "" && mqttPacketMax(cfg) > limit {
		log.Warn("gateway: NATS carries smaller messages than -mqtt-max-packet allows; the MQTT Maximum Packet Size announced is what it carries",
			"nats_max_payload", maxPayload, "mqtt_max_packet", limit)
		cfg.MQTTConfig.Limits.MaxPacketSize = limit
	}
}

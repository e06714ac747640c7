package gateway

import (
	"context"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/mqtt"
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
	g := &Gateway{cfg: cfg, eng: eng}
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
	bus, err := StartBus(bc)
	if err != nil {
		return nil, err
	}
	g.bus = bus
	g.hub = NewHub(HubConfig{Node: cfg.Node, Now: eng.Now, CommandTimeout: cfg.CommandTimeout,
		MaxCommandTimeout: cfg.MaxCommandTimeout, MaxPending: cfg.MaxPending, Logger: cfg.Logger}, bus)
	if err := g.hub.Start(); err != nil {
		bus.Close()
		return nil, err
	}
	g.ws = newWSDevices(g.hub, g.cfg.Auth, cfg, eng.Now)
	fail := func(err error) (*Gateway, error) {
		g.hub.Close()
		bus.Close()
		return nil, err
	}
	devRoutes := http1.NewRouter()
	devRoutes.Handle("GET /v1/connect", g.ws.server.Handler())
	if cfg.MQTT != "" {
		g.mq = newMQTTDevices(g.hub, bus, g.cfg.Auth, cfg, eng.Now)
		devRoutes.Handle("GET /mqtt", g.mq.broker.WebSocketHandler())
		fail = func(err error) (*Gateway, error) {
			g.mq.close()
			g.hub.Close()
			bus.Close()
			return nil, err
		}
		if err := g.mq.start(cfg.MQTTBridgeSubject); err != nil {
			return fail(err)
		}
		if g.mqLn, err = g.mq.broker.Listen(eng, cfg.MQTT); err != nil {
			return fail(fmt.Errorf("gateway: MQTT listener %s: %w", cfg.MQTT, err))
		}
	}
	if g.devSrv, err = http1.NewServer(eng, cfg.HTTP, devRoutes); err != nil {
		return fail(err)
	}
	if g.devLn, err = g.devSrv.Listen(cfg.Addr); err != nil {
		return fail(fmt.Errorf("gateway: device listener %s: %w", cfg.Addr, err))
	}
	if cfg.API != "-" {
		if g.apiSrv, err = http1.NewServer(eng, cfg.HTTP, g.apiRoutes()); err != nil {
			return fail(err)
		}
		if g.apiLn, err = g.apiSrv.Listen(cfg.API); err != nil {
			return fail(fmt.Errorf("gateway: API listener %s: %w", cfg.API, err))
		}
	}
	return g, nil
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
	return cs
}

// Close stops the hub and the bus; call it after the engine has shut down
// (its drain sends devices their goodbye and presence offline).
func (g *Gateway) Close() {
	g.devSrv.Close()
	if g.apiSrv != nil {
		g.apiSrv.Close()
	}
	if g.mq != nil {
		g.mq.close()
	}
	g.hub.Close()
	g.bus.Close()
}

// Shutdown drains the engine (devices get close 1001 with a retry hint,
// commands in flight finish or time out) within ctx, then closes the
// gateway.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.eng.Shutdown(ctx)
	g.Close()
	return err
}

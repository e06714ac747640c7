package loadgen_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/loadgen"
)

// ExampleMQTTDeviceConfig runs ten MQTT 5.0 devices against a gateway in
// this process: they connect to its MQTT listener with their tokens,
// publish telemetry at QoS 1 that the run watches arrive on NATS, and
// acknowledge the commands sent through the management API.
func ExampleMQTTDeviceConfig() {
	secret := []byte("a-secret-of-at-least-32-bytes-long")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	defer eng.Close()
	dir, err := os.MkdirTemp("", "warren-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	g, err := gateway.New(eng, gateway.Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", MQTT: "127.0.0.1:0",
		Auth: gateway.NewHMACAuth(secret), Node: "n1", Logger: quiet, DataDir: dir})
	if err != nil {
		panic(err)
	}
	defer g.Close()
	nc, err := nats.Connect("", nats.InProcessServer(g.Bus().Embedded()))
	if err != nil {
		panic(err)
	}
	defer nc.Close()

	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:      "mqtt://" + g.MQTTAddr(),
		Scenario: loadgen.ScenarioDevices,
		Conns:    10,
		RPS:      100,
		Duration: 500 * time.Millisecond,
		Devices: loadgen.DeviceConfig{
			JWTSecret:  secret,
			NATSConn:   nc,
			CommandRPS: 10,
			APIURL:     "http://" + g.APIAddr(),
			MQTT:       loadgen.MQTTDeviceConfig{Version: 5, QoS: 1},
		},
	})
	if err != nil {
		panic(err)
	}
	d := rep.Devices
	fmt.Println("protocol:", rep.Protocol)
	fmt.Println("devices:", rep.Connects)
	fmt.Println("telemetry all on NATS:", d.TelemetrySent > 0 && d.TelemetryReceived == d.TelemetrySent)
	fmt.Println("commands all acked:", d.CommandsSent > 0 && d.CommandOutcomes["200"] == d.CommandsSent)
	fmt.Println("errors:", rep.TotalErrors())
	// Output:
	// protocol: mqtt
	// devices: 10
	// telemetry all on NATS: true
	// commands all acked: true
	// errors: 0
}

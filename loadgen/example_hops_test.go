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

// ExampleDeviceReport_hops runs ten WebSocket devices against a gateway in
// this process and reads where the latency went: the telemetry's end to
// end split at the gateway's Warren-Received header (DeviceReport.Hops),
// and the commands' round trip split at their arrival at the device
// (DeviceReport.CommandHops).
func ExampleDeviceReport_hops() {
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
	g, err := gateway.New(eng, gateway.Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0",
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
		URL:      "ws://" + g.DeviceAddr() + "/v1/connect",
		Scenario: loadgen.ScenarioDevices,
		Conns:    10,
		RPS:      100,
		Duration: 500 * time.Millisecond,
		Devices: loadgen.DeviceConfig{
			JWTSecret:  secret,
			NATSConn:   nc,
			CommandRPS: 10,
			APIURL:     "http://" + g.APIAddr(),
		},
	})
	if err != nil {
		panic(err)
	}
	d := rep.Devices
	toGW, fromGW := d.Hops[loadgen.HopToGateway], d.Hops[loadgen.HopFromGateway]
	toDev, back := d.CommandHops[loadgen.HopToDevice], d.CommandHops[loadgen.HopFromDevice]
	fmt.Println("telemetry split:", toGW.Count == d.E2ELatency.Count && fromGW.Count == toGW.Count)
	fmt.Println("commands split:", toDev.Count == d.CommandLatency.Count && back.Count == toDev.Count)
	fmt.Println("errors:", rep.TotalErrors())
	// Output:
	// telemetry split: true
	// commands split: true
	// errors: 0
}

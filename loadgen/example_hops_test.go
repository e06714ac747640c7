package loadgen_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
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

// ExampleDeviceConfig_commandsInDevices configures a multi-process
// devices run (not run here: it starts worker processes). By default the
// parent, which runs no devices, sends the commands, to devices picked at
// random among the run's; CommandsInDevices sends them from the workers
// instead, each its share to its own connected devices, as a fleet-side
// client would. Either way each device writes its arrival time in its
// ack, so DeviceReport.CommandHops splits the round trip at the device.
func ExampleDeviceConfig_commandsInDevices() {
	exe, _ := os.Executable() // a binary whose "load -worker" serves loadgen.ServeWorker
	cfg := loadgen.Config{
		URL: "ws://127.0.0.1:8080/v1/connect", Scenario: loadgen.ScenarioDevices,
		Conns: 100000, Procs: 6, Rate: 5000, Hold: 20 * time.Second, Duration: 30 * time.Second, RPS: 20000,
		Devices: loadgen.DeviceConfig{
			JWTSecret:         []byte("the gateway's secret"),
			NATS:              "nats://127.0.0.1:4222",
			APIURL:            "http://127.0.0.1:8081",
			CommandRPS:        500,
			CommandsInDevices: false, // the default: the commands come from the parent
		},
		WorkerCommand: func(int) *exec.Cmd { return exec.Command(exe, "load", "-worker") },
	}
	rep, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	d := rep.Devices
	fmt.Println("commands p99:", time.Duration(d.CommandLatency.P99*float64(time.Millisecond)),
		"to device p99:", time.Duration(d.CommandHops[loadgen.HopToDevice].P99*float64(time.Millisecond)))
}

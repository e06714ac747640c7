package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
)

// ExampleStartDirectory is what `warren serve -procs N` sets up on a
// machine: one NATS server and the machine's Directory (in the parent),
// and workers that hold only their own devices and ask the directory for
// the others (Config.Directory).
func ExampleStartDirectory() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := gateway.StartBus(gateway.BusConfig{Listen: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bus.Close()
	dir, err := gateway.StartDirectory(bus, gateway.DirectoryConfig{Machine: "box1", Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dir.Close()

	var workers []*gateway.Gateway
	for i := range 2 {
		eng, _ := engine.New(engine.Config{Logger: quiet}, nil)
		eng.Start("")
		defer eng.Close()
		g, err := gateway.New(eng, gateway.Config{Addr: "127.0.0.1:0", API: "-", Auth: gateway.NoAuth(),
			Node: fmt.Sprintf("box1-%d", i), Directory: "box1", Bus: gateway.BusConfig{URLs: []string{bus.ClientURL()}},
			Logger: quiet})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer g.Close()
		workers = append(workers, g)
	}

	// A device on worker 1 (NoAuth: ?token= is the device id) ...
	c, _, err := websocket.DefaultDialer.Dial("ws://"+workers[1].DeviceAddr()+"/v1/connect?token=sensor-7", http.Header{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	// ... is found from worker 0, which holds no directory of its own.
	for range 100 {
		if d := workers[0].Hub().Lookup("sensor-7"); d != nil {
			fmt.Println(d.Device, "on", d.Node, "- entries in the machine's directory:", dir.Len())
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Output: sensor-7 on box1-1 - entries in the machine's directory: 1
}

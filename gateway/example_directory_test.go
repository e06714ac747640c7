package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
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

// ExampleDirectory_ServeAPI is the management API of `warren serve -procs
// N`: the prefork parent serves it from the machine's Directory on an
// engine of its own, so that a command goes from the API to the worker
// holding the device, and lookups read the directory in-process. The
// workers serve no API (Config.API "-").
func ExampleDirectory_ServeAPI() {
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
	apiEng, _ := engine.New(engine.Config{Loops: 1, Logger: quiet}, nil)
	apiEng.Start("")
	defer apiEng.Close()
	api, err := dir.ServeAPI(apiEng, gateway.APIConfig{Addr: "127.0.0.1:0", Token: "s3cret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer api.Close()

	eng, _ := engine.New(engine.Config{Logger: quiet}, nil)
	eng.Start("")
	defer eng.Close()
	w, err := gateway.New(eng, gateway.Config{Addr: "127.0.0.1:0", API: "-", Auth: gateway.NoAuth(),
		Node: "box1-0", Directory: "box1", Bus: gateway.BusConfig{URLs: []string{bus.ClientURL()}}, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+w.DeviceAddr()+"/v1/connect?token=lamp-1", http.Header{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for i := 0; i < 500 && dir.Lookup("lamp-1") == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	// The device acks the command it receives.
	go func() {
		var cmd struct{ ID string }
		if c.ReadJSON(&cmd) == nil {
			c.WriteJSON(map[string]any{"type": "ack", "id": cmd.ID, "status": "ok", "result": "on"})
		}
	}()

	req, _ := http.NewRequest("POST", "http://"+api.Addr()+"/v1/devices/lamp-1/commands", strings.NewReader(`{"name":"switch","payload":true}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	var ack struct{ Status, Result string }
	json.NewDecoder(resp.Body).Decode(&ack)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, ack.Status, ack.Result)
	// Output: 200 ok on
}

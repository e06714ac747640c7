package mqtt_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/mqtt"
)

// Hooks.OnDrain keeps a client open while the engine drains (a gateway
// waits for the acks its device owes); Client.GoingAway then says the
// drain's own goodbye: DISCONNECT server_shutting_down to a 5.0 client.
func ExampleClient_GoingAway() {
	e, _ := engine.New(engine.Config{}, nil)
	e.Start("")
	held := make(chan *mqtt.Client, 1)
	broker := mqtt.NewServer(mqtt.Config{Hooks: mqtt.Hooks{
		OnDrain: func(c *mqtt.Client) bool {
			held <- c
			return true // not yet: the application says goodbye
		},
	}})
	defer broker.Close()
	ln, _ := broker.Listen(e, "127.0.0.1:0")

	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version5, ClientID: []byte("dev-1"), CleanStart: true}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, _ := c.Read(buf) // the CONNACK

	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	}()
	cl := <-held // the drain asked, and the client stays open
	cl.GoingAway()

	d := mqtt.Decoder{Version: mqtt.Version5}
	n, _ = c.Read(buf)
	_, p, _ := d.Decode(buf[:n], nil)
	fmt.Println(p.(*mqtt.Disconnect).ReasonCode)
	// Output: server_shutting_down
}

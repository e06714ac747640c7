package mqtt_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/mqtt"
)

// A broker on an engine: MQTT over TCP on one listener, MQTT over
// WebSocket at /mqtt on an HTTP listener of the same engine. A raw client
// connects and gets its CONNACK.
func ExampleServer() {
	e, _ := engine.New(engine.Config{}, nil)
	e.Start("")
	defer e.Shutdown(context.Background())

	broker := mqtt.NewServer(mqtt.Config{})
	defer broker.Close()
	ln, _ := broker.Listen(e, "127.0.0.1:0")

	r := http1.NewRouter()
	r.Handle("GET /mqtt", broker.WebSocketHandler())
	hs, _ := http1.NewServer(e, http1.Config{}, r)
	hs.Listen("127.0.0.1:0")

	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version5, ClientID: []byte("example"), CleanStart: true}))
	buf := make([]byte, 256)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	d := mqtt.Decoder{Version: mqtt.Version5}
	_, p, _ := d.Decode(buf[:n], nil)
	ca := p.(*mqtt.Connack)
	fmt.Println(ca.ReasonCode, ca.SessionPresent)
	// Output: success false
}

// Hooks connect the broker to an application: devices authenticate with
// a password, may use only their own topics, and every publish is also
// seen by a bridge.
func ExampleHooks() {
	hooks := mqtt.Hooks{
		Authenticate: func(ci *mqtt.ConnectInfo) (any, mqtt.ReasonCode, string) {
			if string(ci.Password) != "let-me-in" {
				return nil, mqtt.BadUserNameOrPassword, "bad password"
			}
			return ci.ClientID, mqtt.Success, ""
		},
		Authorize: func(c *mqtt.Client, a mqtt.Action, topic string) bool {
			return strings.HasPrefix(topic, "devices/"+c.ID+"/")
		},
		OnPublish: func(c *mqtt.Client, m *mqtt.Message) (bool, mqtt.ReasonCode) {
			if len(m.Payload) > 4096 {
				return false, mqtt.QuotaExceeded // refused: a 5.0 client's PUBACK says why
			}
			// Forward m elsewhere (copy what must outlive the call), and
			// route it locally too.
			return true, mqtt.Success
		},
	}
	broker := mqtt.NewServer(mqtt.Config{Hooks: hooks})
	defer broker.Close()
	n, err := broker.Publish(&mqtt.Message{Topic: "devices/d1/commands/reboot", Payload: []byte("{}"), QoS: mqtt.QoS1})
	fmt.Println(n, err)
	// Output: 0 <nil>
}

// A Client tells the hooks who connected: its id and the identity
// Authenticate returned are fields; its user name, protocol level and
// transport are read through methods, and Server is the broker it is
// connected to (to publish to it from a hook, for one).
func ExampleClient() {
	e, _ := engine.New(engine.Config{}, nil)
	e.Start("")
	defer e.Shutdown(context.Background())

	seen := make(chan string, 1)
	var broker *mqtt.Server
	broker = mqtt.NewServer(mqtt.Config{Hooks: mqtt.Hooks{
		OnConnect: func(c *mqtt.Client, _ bool) {
			seen <- fmt.Sprintf("%s user %q version %d websocket %v same server %v",
				c.ID, c.Username(), c.Version(), c.WebSocket(), c.Server() == broker)
		},
	}})
	defer broker.Close()
	ln, _ := broker.Listen(e, "127.0.0.1:0")

	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version311, ClientID: []byte("dev-1"),
		CleanStart: true, HasUsername: true, Username: []byte("dev-1")}))
	fmt.Println(<-seen)
	// Output: dev-1 user "dev-1" version 4 websocket false same server true
}

package mqtt_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/mqtt"
)

// With ExternalShares the application decides which broker's share group
// gets a message (a cluster picks one broker per message): OnShare tells
// it a group has members here, and PublishShared hands a message to one
// of them.
func ExampleServer_PublishShared() {
	e, _ := engine.New(engine.Config{}, nil)
	e.Start("")
	defer e.Shutdown(context.Background())

	groups := make(chan string, 1)
	broker := mqtt.NewServer(mqtt.Config{ExternalShares: true, Hooks: mqtt.Hooks{
		OnShare: func(share string, added bool) {
			if added {
				groups <- share // a cluster would join a queue group for it here
			}
		},
	}})
	defer broker.Close()
	ln, _ := broker.Listen(e, "127.0.0.1:0")

	// A worker joins the share group.
	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	d := mqtt.Decoder{Version: mqtt.Version311}
	read := func() mqtt.Packet {
		buf := make([]byte, 256)
		n, _ := c.Read(buf)
		_, p, _ := d.Decode(buf[:n], nil)
		return p
	}
	c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version311, ClientID: []byte("worker-1"), CleanStart: true}))
	read() // CONNACK
	c.Write(mqtt.AppendSubscribe(nil, mqtt.Version311, &mqtt.Subscribe{PacketID: 1,
		Filters: []mqtt.Subscription{{Filter: []byte("$share/workers/jobs/#")}}}))
	read() // SUBACK
	share := <-groups

	n, _ := broker.PublishShared(&mqtt.Message{Topic: "jobs/42", Payload: []byte("resize")}, share)
	p := read().(*mqtt.Publish)
	fmt.Println(share, n, string(p.Topic), string(p.Payload))
	// Output: $share/workers/jobs/# 1 jobs/42 resize
}

package mqtt

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// pahoConnect connects Eclipse Paho's Go client (MQTT 3.1.1) to url.
func pahoConnect(t *testing.T, url, id string, clean bool, onMsg paho.MessageHandler) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true).SetDefaultPublishHandler(onMsg)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect %s: %v", url, tok.Error())
	}
	return c
}

func wait(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho: %v", tok.Error())
	}
}

// TestPahoGoClient: Eclipse Paho's Go client over TCP and WebSocket, QoS 0
// to 2, and a persistent session that gets what was published while it
// was away.
func TestPahoGoClient(t *testing.T) {
	b := startBroker(t, Config{})
	for _, url := range []string{"tcp://" + b.addr, "ws://" + b.wsAddr + "/mqtt"} {
		t.Run(url[:3], func(t *testing.T) {
			got := make(chan string, 16)
			h := func(_ paho.Client, m paho.Message) { got <- fmt.Sprintf("%s %s %d", m.Topic(), m.Payload(), m.Qos()) }
			sub := pahoConnect(t, url, "paho-sub-"+url[:3], false, h)
			wait(t, sub.Subscribe("pg/#", 2, nil))
			pub := pahoConnect(t, url, "paho-pub-"+url[:3], true, nil)
			for q := byte(0); q <= 2; q++ {
				wait(t, pub.Publish(fmt.Sprintf("pg/%d", q), q, false, fmt.Sprintf("m%d", q)))
				select {
				case s := <-got:
					if want := fmt.Sprintf("pg/%d m%d %d", q, q, q); s != want {
						t.Fatalf("got %q, want %q", s, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("QoS %d message not received", q)
				}
			}
			sub.Disconnect(100)
			b.waitStats(t, "the subscriber offline", func(Stats) bool { return offline(b, "paho-sub-"+url[:3]) })
			wait(t, pub.Publish("pg/away", 1, false, "while away"))
			pub.Disconnect(100)
			sub = pahoConnect(t, url, "paho-sub-"+url[:3], false, h)
			defer sub.Disconnect(100)
			// If the disconnect overtook the QoS 2 flow of m2 (PUBREC not yet
			// in), the broker redelivers m2 first, as the specification
			// requires (MQTT-4.4.0-1): the client library hands it over again.
			for redelivered := false; ; {
				select {
				case s := <-got:
					if s == "pg/2 m2 2" && !redelivered {
						redelivered = true
						continue
					}
					if s != "pg/away while away 1" {
						t.Fatalf("got %q", s)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("queued message not delivered on reconnect")
				}
				break
			}
		})
	}
}

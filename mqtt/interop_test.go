package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Interop with independent clients: Debian's mosquitto_pub and
// mosquitto_sub (package mosquitto-clients) over TCP, and Python's
// paho-mqtt (package python3-paho-mqtt) over TCP and WebSocket, each in
// 3.1.1 and 5.0. scripts/test installs them; the tests skip without them.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (scripts/test installs it)", name)
	}
	return p
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestMosquittoClients: mosquitto_sub receives what mosquitto_pub
// publishes through the broker, at every QoS, in both versions, and a
// retained message.
func TestMosquittoClients(t *testing.T) {
	sub := needTool(t, "mosquitto_sub")
	pub := needTool(t, "mosquitto_pub")
	b := startBroker(t, Config{})
	host, port := hostPort(t, b.addr)
	for _, v := range []string{"mqttv311", "mqttv5"} {
		for _, qos := range []string{"0", "1", "2"} {
			t.Run(v+"/qos"+qos, func(t *testing.T) {
				topic := "interop/" + v + "/" + qos
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var out bytes.Buffer
				s := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-q", qos, "-t", topic,
					"-C", "3", "-v", "-i", "sub-"+v+qos)
				s.Stdout, s.Stderr = &out, &out
				if err := s.Start(); err != nil {
					t.Fatal(err)
				}
				b.waitStats(t, "subscribed", func(st Stats) bool { return subscribed(b, "sub-"+v+qos) })
				for i := range 3 {
					p := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", v, "-q", qos, "-t", topic,
						"-m", fmt.Sprintf("msg-%d", i))
					if o, err := p.CombinedOutput(); err != nil {
						t.Fatalf("mosquitto_pub: %v %s", err, o)
					}
				}
				if err := s.Wait(); err != nil {
					t.Fatalf("mosquitto_sub: %v: %s", err, out.String())
				}
				want := fmt.Sprintf("%[1]s msg-0\n%[1]s msg-1\n%[1]s msg-2\n", topic)
				if out.String() != want {
					t.Fatalf("got %q, want %q", out.String(), want)
				}
			})
		}
		t.Run(v+"/retained", func(t *testing.T) {
			topic := "interop/retained/" + v
			if o, err := exec.Command(pub, "-h", host, "-p", port, "-V", v, "-r", "-q", "1", "-t", topic, "-m", "kept").CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, o)
			}
			o, err := exec.Command(sub, "-h", host, "-p", port, "-V", v, "-t", topic, "-C", "1", "-W", "5").CombinedOutput()
			if err != nil || string(o) != "kept\n" {
				t.Fatalf("%v %q", err, o)
			}
		})
	}
}

// subscribed reports whether client id has a subscription.
func subscribed(b *broker, id string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	ss := b.sessions.Get(id)
	return ss != nil && ss.subs != nil
}

const pahoScript = `
import sys, threading, time
import paho.mqtt.client as mqtt

host, port, transport, version = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
got = []
done = threading.Event()
subscribed = threading.Event()

def on_connect(c, u, flags, rc, props=None):
    c.subscribe("paho/#", qos=2)

def on_subscribe(c, u, mid, granted, props=None):
    subscribed.set()

def on_message(c, u, m):
    got.append("%s %s %d" % (m.topic, m.payload.decode(), m.qos))
    if len(got) == 3:
        done.set()

kw = {}
if proto == mqtt.MQTTv311:
    kw["clean_session"] = True
sub = mqtt.Client(client_id="paho-sub-" + transport + version, protocol=proto, transport=transport, **kw)
sub.on_connect, sub.on_subscribe, sub.on_message = on_connect, on_subscribe, on_message
if transport == "websockets":
    sub.ws_set_options(path="/mqtt")
sub.connect(host, port, keepalive=30)
sub.loop_start()
if not subscribed.wait(5):
    print("no SUBACK"); sys.exit(1)

pub = mqtt.Client(client_id="paho-pub-" + transport + version, protocol=proto, transport=transport, **kw)
if transport == "websockets":
    pub.ws_set_options(path="/mqtt")
pub.connect(host, port, keepalive=30)
pub.loop_start()
for q in range(3):
    info = pub.publish("paho/q%d" % q, "m%d" % q, qos=q)
    info.wait_for_publish(5)
if not done.wait(5):
    print("got only", got); sys.exit(1)
pub.disconnect(); sub.disconnect()
pub.loop_stop(); sub.loop_stop()
for g in sorted(got):
    print(g)
`

// TestPaho: Python paho-mqtt clients publish and subscribe at every QoS
// over TCP and WebSocket, in 3.1.1 and 5.0.
func TestPaho(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import paho.mqtt.client").Run(); err != nil {
		t.Skip("python3-paho-mqtt not installed (scripts/test installs it)")
	}
	script := filepath.Join(t.TempDir(), "paho_interop.py")
	os.WriteFile(script, []byte(pahoScript), 0o644)
	b := startBroker(t, Config{})
	for _, transport := range []string{"tcp", "websockets"} {
		addr := b.addr
		if transport == "websockets" {
			addr = b.wsAddr
		}
		host, port := hostPort(t, addr)
		for _, v := range []string{"3", "5"} {
			t.Run(transport+"/"+v, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				o, err := exec.CommandContext(ctx, py, script, host, port, transport, v).CombinedOutput()
				want := "paho/q0 m0 0\npaho/q1 m1 1\npaho/q2 m2 2\n"
				if err != nil || string(o) != want {
					t.Fatalf("%v: %q", err, o)
				}
			})
		}
	}
	if s := b.Stats(); s.ProtocolErrors != 0 {
		t.Fatalf("protocol errors with paho: %+v", s)
	}
}

// Command mqttrt measures the MQTT round trip through a broker: -n clients,
// each subscribed to a topic of its own, publish to that topic at -rate
// messages per second in total and receive their own messages back. After
// -warmup it measures for -duration: messages received, latency (publish to
// receipt), its own CPU time per message and, given -server-pid, the
// broker's (-node-pids: each of several processes', one by one).
//
//	mqttrt -addr 127.0.0.1:1883 -n 5000 -qos 1 -rate 20000 -duration 15s -server-pid 1234
//
// With -sub-addr the publishing and the subscribing connections are apart:
// each client publishes on -addr (one broker or cluster node) and receives
// through a second connection to -sub-addr (another node), so the latency is
// the cross-node one (node A → NATS → node C for warren serve):
//
//	mqttrt -addr 127.0.0.1:1883 -sub-addr 127.0.0.1:2883 -n 500 -rate 10000 -password "$SERVICE_TOKEN"
//
// It prints one JSON line and exits 0, or 1 when a connection failed.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
	"github.com/warrenhq/warren/mqtt"
)

var (
	sent, received, acked atomic.Int64
	hist                  [200]atomic.Int64 // latency buckets, 1.1x apart from 10 µs
	measuring             atomic.Bool
	// The measurement window in 100 ms slots by send time: how many
	// messages of each took over slowAfter, and the slowest — whether the
	// tail is spread or a few stalls.
	windowStart       atomic.Int64 // since t0
	slotSlow          [3000]atomic.Int32
	slotMax           [3000]atomic.Int64 // µs
	t0                = time.Now()
	subAddr, password string
)

// slowAfter is the latency counted per 100 ms slot (the target's p99).
const slowAfter = 10 * time.Millisecond

// slowIn counts a message sent at sentAt (since t0) that took lat.
func slowIn(sentAt, lat time.Duration) {
	i := int((int64(sentAt) - windowStart.Load()) / int64(100*time.Millisecond))
	if i < 0 || i >= len(slotSlow) {
		return
	}
	slotSlow[i].Add(1)
	us := lat.Microseconds()
	for {
		m := slotMax[i].Load()
		if us <= m || slotMax[i].CompareAndSwap(m, us) {
			return
		}
	}
}

func bucket(d time.Duration) int {
	us := float64(d) / 1e3
	if us < 10 {
		return 0
	}
	return min(len(hist)-1, int(math.Log(us/10)/math.Log(1.1))+1)
}

func quantile(q float64) float64 {
	var total int64
	for i := range hist {
		total += hist[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var n int64
	for i := range hist {
		if n += hist[i].Load(); n >= want {
			return 10 * math.Pow(1.1, float64(i)) / 1e3 // ms, upper bound of the bucket
		}
	}
	return 0
}

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "broker address")
	n := flag.Int("n", 1000, "clients")
	qos := flag.Int("qos", 0, "QoS of publications and subscriptions")
	rate := flag.Float64("rate", 10000, "messages per second, all clients together")
	size := flag.Int("size", 64, "payload bytes (at least 8)")
	warmup := flag.Duration("warmup", 3*time.Second, "time before measuring")
	duration := flag.Duration("duration", 15*time.Second, "measurement window")
	pid := flag.Int("server-pid", 0, "broker pid, for its CPU time")
	cpuProfile := flag.String("cpuprofile", "", "write the client's CPU profile over the measurement window to this file")
	nodePids := flag.String("node-pids", "", "comma-separated pids (cluster nodes) whose CPU time per message is reported one by one")
	srcBase := flag.String("src-base", "127.0.2.1", "first loopback source address")
	srcCount := flag.Int("src-count", 60, "loopback source addresses")
	flag.StringVar(&subAddr, "sub-addr", "", "subscribe through a second connection to this broker (empty: on the publishing connection)")
	flag.StringVar(&password, "password", "", "CONNECT password (a warren serve token)")
	flag.Parse()
	benchutil.RaiseFileLimit()
	srcs, err := benchutil.SourceAddrs(*srcBase, *srcCount)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	interval := time.Duration(float64(*n) / *rate * float64(time.Second))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	ready := make(chan struct{}, *n)
	for i := 0; i < *n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := client(benchutil.Dialer(srcs, i, 10*time.Second), *addr, i, mqtt.QoS(*qos), max(*size, 8), interval, ready, stop); err != nil {
				failed.Add(1)
				fmt.Fprintln(os.Stderr, "client", i, err)
				ready <- struct{}{}
			}
		}(i)
	}
	for range *n {
		<-ready
	}
	time.Sleep(*warmup)
	var nodes []int
	for _, f := range strings.Split(*nodePids, ",") {
		if p, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && p > 0 {
			nodes = append(nodes, p)
		}
	}
	nodeCPU := func() []time.Duration {
		d := make([]time.Duration, len(nodes))
		for i, p := range nodes {
			d[i], _ = benchutil.CPUTime(p)
		}
		return d
	}
	cpu0, _ := benchutil.CPUTime(*pid)
	self0, _ := benchutil.CPUTime(0)
	nodes0 := nodeCPU()
	s0, r0, a0 := sent.Load(), received.Load(), acked.Load()
	if *cpuProfile != "" {
		if f, err := os.Create(*cpuProfile); err == nil {
			pprof.StartCPUProfile(f)
			defer f.Close()
		}
	}
	windowStart.Store(int64(time.Since(t0)))
	measuring.Store(true)
	start := time.Now()
	time.Sleep(*duration)
	measuring.Store(false)
	pprof.StopCPUProfile()
	el := time.Since(start)
	cpu1, _ := benchutil.CPUTime(*pid)
	self1, _ := benchutil.CPUTime(0)
	nodes1 := nodeCPU()
	s1, r1, a1 := sent.Load(), received.Load(), acked.Load()
	close(stop)
	out := map[string]any{"clients": *n, "qos": *qos, "rate": *rate, "seconds": el.Seconds(),
		"sent": s1 - s0, "received": r1 - r0, "acked": a1 - a0, "failed": failed.Load(),
		"p50_ms": quantile(0.5), "p99_ms": quantile(0.99)}
	if *pid > 0 && r1 > r0 {
		cpu := cpu1 - cpu0
		out["server_cpu_s"] = cpu.Seconds()
		out["server_cpu_us_per_msg"] = float64(cpu.Microseconds()) / float64(r1-r0)
	}
	if r1 > r0 {
		perMsg := func(d time.Duration) float64 {
			return math.Round(float64(d.Microseconds())/float64(r1-r0)*10) / 10
		}
		// The client's own CPU (all its connections, pacing and
		// measuring), to tell its share of the cores from the nodes'.
		out["client_cpu_us_per_msg"] = perMsg(self1 - self0)
		if len(nodes) > 0 {
			per := make([]float64, len(nodes))
			for i := range nodes {
				per[i] = perMsg(nodes1[i] - nodes0[i])
			}
			out["nodes_cpu_us_per_msg"] = per
		}
	}
	// The 100 ms slots (by send time) with messages over slowAfter:
	// [seconds into the window, how many, the slowest in ms].
	var slow [][3]float64
	nslow := 0
	for i := range slotSlow {
		if k := slotSlow[i].Load(); k > 0 {
			nslow++
			if len(slow) < 40 {
				slow = append(slow, [3]float64{float64(i) / 10, float64(k), float64(slotMax[i].Load()) / 1e3})
			}
		}
	}
	out["slow_ms"] = slowAfter.Milliseconds()
	out["slow_slots"] = nslow
	out["slow_slot_list"] = slow
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

// conn is one MQTT connection of a client: its socket, the lock of its
// writes and where its reader reports an error.
type conn struct {
	c    net.Conn
	wmu  sync.Mutex
	errc chan error
}

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.c.Write(b)
	return err
}

// open connects to addr as id, subscribed to topic when sub is set, and
// reads until the socket fails: its messages are measured, its QoS 1
// messages acknowledged. subscribed is closed at the SUBACK.
func open(d *net.Dialer, addr, id string, topic []byte, sub bool, qos mqtt.QoS, subscribed chan struct{}) (*conn, error) {
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &conn{c: nc, errc: make(chan error, 1)}
	v := mqtt.Version311
	cp := mqtt.Connect{Version: v, ClientID: []byte(id), CleanStart: true}
	if password != "" {
		cp.HasUsername, cp.HasPassword = true, true
		cp.Username, cp.Password = []byte("bench"), []byte(password)
	}
	b := mqtt.AppendConnect(nil, &cp)
	if sub {
		b = mqtt.AppendSubscribe(b, v, &mqtt.Subscribe{PacketID: 1, Filters: []mqtt.Subscription{{Filter: topic, QoS: qos}}})
	}
	if err := c.write(b); err != nil {
		nc.Close()
		return nil, err
	}
	go func() { // reader
		dec := mqtt.Decoder{Version: v}
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		var ack []byte
		for {
			k, err := nc.Read(tmp)
			if err != nil {
				c.errc <- err
				return
			}
			buf = append(buf, tmp[:k]...)
			off := 0
			ack = ack[:0]
			for {
				n, p, err := dec.Decode(buf[off:], nil)
				if err != nil {
					c.errc <- err
					return
				}
				if n == 0 {
					break
				}
				off += n
				switch p := p.(type) {
				case *mqtt.Connack:
					if p.ReasonCode != mqtt.Success {
						c.errc <- fmt.Errorf("CONNACK %v", p.ReasonCode)
						return
					}
					if !sub {
						close(subscribed)
					}
				case *mqtt.Suback:
					close(subscribed)
				case *mqtt.Publish:
					if len(p.Payload) >= 8 && measuring.Load() {
						sentAt := time.Duration(binary.BigEndian.Uint64(p.Payload))
						lat := time.Since(t0) - sentAt
						hist[bucket(lat)].Add(1)
						if lat > slowAfter {
							slowIn(sentAt, lat)
						}
					}
					received.Add(1)
					if p.QoS == 1 {
						ack = mqtt.AppendPuback(ack, v, p.PacketID, mqtt.Success)
					}
				case *mqtt.Ack:
					acked.Add(1)
				}
			}
			buf = append(buf[:0], buf[off:]...)
			if len(ack) > 0 {
				if err := c.write(ack); err != nil {
					c.errc <- err
					return
				}
			}
		}
	}()
	return c, nil
}

// client runs one client until stop: a connection subscribed to its own
// topic that publishes to it, or with -sub-addr a publishing connection
// and a subscribing one to the other broker.
func client(d *net.Dialer, addr string, i int, qos mqtt.QoS, size int, interval time.Duration, ready chan<- struct{}, stop <-chan struct{}) error {
	topic := []byte("rt/" + strconv.Itoa(i))
	id := "rt-" + strconv.Itoa(i)
	wait := func(c *conn, ok chan struct{}) error {
		select {
		case <-ok:
			return nil
		case err := <-c.errc:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no CONNACK or SUBACK")
		}
	}
	var c, sc *conn
	var err error
	if subAddr == "" {
		subscribed := make(chan struct{})
		if c, err = open(d, addr, id, topic, true, qos, subscribed); err != nil {
			return err
		}
		defer c.c.Close()
		if err := wait(c, subscribed); err != nil {
			return err
		}
	} else {
		subscribed, connected := make(chan struct{}), make(chan struct{})
		if sc, err = open(d, subAddr, id+"-s", topic, true, qos, subscribed); err != nil {
			return err
		}
		defer sc.c.Close()
		if err := wait(sc, subscribed); err != nil {
			return err
		}
		if c, err = open(d, addr, id, topic, false, qos, connected); err != nil {
			return err
		}
		defer c.c.Close()
		if err := wait(c, connected); err != nil {
			return err
		}
	}
	var subErr <-chan error // nil: never ready
	if sc != nil {
		subErr = sc.errc
	}
	ready <- struct{}{}
	payload := make([]byte, size)
	var pid uint16
	// Start at a random phase so clients spread over the interval.
	next := time.Now().Add(time.Duration(i) * interval / time.Duration(max(1, 1000)) % max(interval, 1))
	var out []byte
	t := time.NewTimer(time.Until(next)) // one timer, reset: not one allocated per message
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case err := <-c.errc:
			return err
		case err := <-subErr:
			return err
		case <-t.C:
		}
		next = next.Add(interval)
		t.Reset(time.Until(next))
		binary.BigEndian.PutUint64(payload, uint64(time.Since(t0)))
		p := mqtt.Publish{Topic: topic, QoS: qos, Payload: payload}
		if qos > 0 {
			if pid++; pid == 0 {
				pid = 1
			}
			p.PacketID = pid
		}
		out = mqtt.AppendPublish(out[:0], mqtt.Version311, &p)
		if err := c.write(out); err != nil {
			return err
		}
		sent.Add(1)
	}
}

// Command mqttidle opens many MQTT connections to a broker, each subscribed
// to a topic of its own, and holds them idle, so a script can measure what
// an idle MQTT client costs the broker.
//
//	mqttidle -addr 127.0.0.1:1883 -n 15000 -hold 600s
//
// Each connection sends CONNECT (3.1.1 by default, clean session, client id
// -id with %d replaced by i: idle-<i>; with -user the client id as user
// name too; keep-alive -keepalive; with -will a will of 7 bytes,
// "offline" at QoS 1, on that topic with %d replaced by i, as a device's
// last will), waits for CONNACK, subscribes to -filter
// with %d replaced by i (idle/<i>; devices/dev-%d/commands/+ is a device of
// warren serve) at QoS -qos and waits for SUBACK. It dials from -src-count
// loopback source addresses starting at -src-base, with at most
// -concurrency connections being set up at once. When every connection is
// set up it prints a JSON summary and "READY n" on stdout, then holds them
// until -hold has passed or it gets SIGTERM or SIGINT. -first numbers the
// connections from -first instead of 0, so a second process can add
// clients of its own to a broker a first one already holds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
	"github.com/warrenhq/warren/mqtt"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "broker address")
	n := flag.Int("n", 1000, "connections")
	first := flag.Int("first", 0, "number of the first connection (client id, filter, source address)")
	v5 := flag.Bool("v5", false, "speak MQTT 5.0 instead of 3.1.1")
	qos := flag.Int("qos", 0, "subscription QoS")
	keepalive := flag.Int("keepalive", 0, "keep-alive in seconds (0: none)")
	conc := flag.Int("concurrency", 200, "connections being set up at once")
	srcBase := flag.String("src-base", "127.0.1.1", "first loopback source address")
	srcCount := flag.Int("src-count", 60, "loopback source addresses")
	hold := flag.Duration("hold", 600*time.Second, "how long to hold the connections")
	idPat := flag.String("id", "idle-%d", "client id, %d replaced by the connection's number")
	filterPat := flag.String("filter", "idle/%d", "topic filter subscribed to, %d replaced by the connection's number")
	user := flag.Bool("user", false, "send the client id as user name too")
	will := flag.String("will", "", "will topic, %d replaced by the connection's number: each client sends a will \"offline\" at QoS 1 (empty: no will)")
	timeout := flag.Duration("open-timeout", 120*time.Second, "time allowed to set every connection up")
	flag.Parse()
	if _, err := benchutil.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "mqttidle:", err)
	}
	srcs, err := benchutil.SourceAddrs(*srcBase, *srcCount)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqttidle:", err)
		os.Exit(2)
	}
	v := mqtt.Version311
	if *v5 {
		v = mqtt.Version5
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conns := make([]net.Conn, *n)
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	errs := map[string]int{}
	sem := make(chan struct{}, *conc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			c, err := open(ctx, benchutil.Dialer(srcs, *first+i, 10*time.Second), *addr, v, *first+i, mqtt.QoS(*qos), uint16(*keepalive), pattern{*idPat, *filterPat, *will, *user})
			if err != nil {
				failed.Add(1)
				errMu.Lock()
				errs[benchutil.ErrKind(err)]++
				errMu.Unlock()
				return
			}
			conns[i] = c
			ok.Add(1)
		}(i)
	}
	wg.Wait()
	sum := map[string]any{"opened": ok.Load(), "failed": failed.Load(), "errors": errs,
		"seconds": time.Since(start).Seconds()}
	b, _ := json.Marshal(sum)
	fmt.Println(string(b))
	fmt.Printf("READY %d\n", ok.Load())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

// pattern is what each connection sends: client id, filter and will
// topic patterns (no will if empty), and whether the client id is the
// user name too.
type pattern struct {
	id, filter, will string
	user             bool
}

// open sets up one subscribed connection.
func open(ctx context.Context, d *net.Dialer, addr string, v mqtt.Version, i int, qos mqtt.QoS, ka uint16, p pattern) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	n := strconv.Itoa(i)
	id := strings.ReplaceAll(p.id, "%d", n)
	cp := &mqtt.Connect{Version: v, ClientID: []byte(id), CleanStart: true, KeepAlive: ka}
	if p.user {
		cp.HasUsername, cp.Username = true, cp.ClientID
	}
	if p.will != "" {
		cp.Will = &mqtt.Will{QoS: mqtt.QoS1, Topic: []byte(strings.ReplaceAll(p.will, "%d", n)), Payload: []byte("offline")}
	}
	b := mqtt.AppendConnect(nil, cp)
	b = mqtt.AppendSubscribe(b, v, &mqtt.Subscribe{PacketID: 1,
		Filters: []mqtt.Subscription{{Filter: []byte(strings.ReplaceAll(p.filter, "%d", n)), QoS: qos}}})
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, err
	}
	dec := mqtt.Decoder{Version: v}
	var buf []byte
	tmp := make([]byte, 512)
	for want := mqtt.TypeConnack; want <= mqtt.TypeSuback; {
		n, p, err := dec.Decode(buf, nil)
		if err != nil {
			c.Close()
			return nil, err
		}
		if n == 0 {
			k, err := c.Read(tmp)
			if err != nil {
				c.Close()
				return nil, err
			}
			buf = append(buf, tmp[:k]...)
			continue
		}
		buf = buf[n:]
		switch p := p.(type) {
		case *mqtt.Connack:
			if p.ReasonCode != mqtt.Success {
				c.Close()
				return nil, fmt.Errorf("CONNACK %v", p.ReasonCode)
			}
			want = mqtt.TypeSuback
		case *mqtt.Suback:
			want = mqtt.TypeSuback + 1
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

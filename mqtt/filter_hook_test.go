package mqtt

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// filterLog records Hooks.OnFilter calls.
type filterLog struct {
	mu  sync.Mutex
	got []string
}

func (l *filterLog) hook(filter string, added bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, fmt.Sprintf("%s %v", filter, added))
}

// want waits for the calls so far to be want, in any order, then forgets
// them.
func (l *filterLog) want(t *testing.T, want ...string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		l.mu.Lock()
		done := len(l.got) >= len(want)
		l.mu.Unlock()
		if done {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // nothing more comes
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(l.got, want) {
		t.Fatalf("OnFilter calls %q, want %q", l.got, want)
	}
	l.got = nil
}

// TestOnFilter: the hook hears of a filter when its first subscription is
// made and when its last one goes — literal and wildcard filters, shared
// subscriptions (without their $share prefix), a second subscriber, a
// re-subscription, UNSUBSCRIBE, a clean session ending and a persistent
// one kept offline.
func TestOnFilter(t *testing.T) {
	var l filterLog
	b := startBroker(t, Config{Hooks: Hooks{OnFilter: l.hook}})
	for _, v := range []Version{Version311, Version5} {
		t.Run(v.String(), func(t *testing.T) {
			a := connectOK(t, b.addr, v, "a-"+v.String())
			a.subscribe(1, QoS1, "x/lit", "x/+/w")
			l.want(t, "x/lit true", "x/+/w true")
			a.subscribe(2, QoS0, "x/lit") // the same session again: no change
			l.want(t)

			c := connectOK(t, b.addr, v, "c-"+v.String())
			c.subscribe(1, QoS0, "x/lit", "x/+/w", "$share/g/x/sh")
			l.want(t, "x/sh true")

			a.send(&Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("x/lit"), []byte("x/+/w")}})
			a.expectUnsuback(3)
			l.want(t) // c still has both

			c.send(&Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte("x/lit")}})
			c.expectUnsuback(2)
			l.want(t, "x/lit false")

			// c's clean session ends with its connection: its filters go.
			c.c.Close()
			l.want(t, "x/+/w false", "x/sh false")

			// A persistent session keeps its filters while offline.
			p := dial(t, b.addr, v)
			cp := &Connect{ClientID: []byte("p-" + v.String()), KeepAlive: 60}
			if v == Version5 {
				cp.Props.SessionExpiry = 3600
			}
			if ca := p.connect(cp); ca.ReasonCode != Success {
				t.Fatalf("CONNACK %v", ca.ReasonCode)
			}
			p.subscribe(1, QoS1, "p/"+v.String()+"/#")
			l.want(t, "p/"+v.String()+"/# true")
			p.c.Close()
			l.want(t)
			a.c.Close()
		})
	}
}

// expectUnsuback reads the next packet and checks it is UNSUBACK id.
func (c *client) expectUnsuback(id uint16) {
	c.t.Helper()
	if u, ok := c.next().(*Unsuback); !ok || u.PacketID != id {
		c.t.Fatalf("expected UNSUBACK %d", id)
	}
}

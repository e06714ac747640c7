package mqtt

import (
	"reflect"
	"runtime"
	"testing"
	"time"
)

// A hook may hand the Client it is given to another goroutine from the
// will's Authorize on, before the CONNECT is accepted: what the Client's
// methods read (the connExt among it) is settled by then, for a 3.1.1
// client keeping its session (Clean Session 0: a session apart) and a 5.0
// client setting limits alike. go test -race fails this if not.
func TestAuthorizeWillClientShared(t *testing.T) {
	type seen struct {
		ws   bool
		user string
	}
	got := make(chan seen, 4)
	b := startBroker(t, Config{Hooks: Hooks{Authorize: func(c *Client, a Action, topic string) bool {
		if a == ActionPublish && topic == "will/t" {
			go func() { got <- seen{c.WebSocket(), c.Username()} }()
		}
		return true
	}}})
	for _, cn := range []*Connect{
		{Version: Version311, ClientID: []byte("keeps"), HasUsername: true, Username: []byte("keeps")},
		{Version: Version5, ClientID: []byte("limits"), CleanStart: true, HasUsername: true, Username: []byte("someone"),
			Props: Properties{Present: setOf(PropReceiveMaximum, PropTopicAliasMaximum), ReceiveMaximum: 5, TopicAliasMaximum: 3}},
		{Version: Version5, ClientID: []byte("expires"), Props: Properties{SessionExpiry: 60}},
	} {
		c := dial(t, b.addr, cn.Version)
		cn.Will = &Will{Topic: []byte("will/t"), Payload: []byte("x")}
		if ca := c.connect(cn); ca.ReasonCode != Success {
			t.Fatalf("%s: CONNACK %v", cn.ClientID, ca.ReasonCode)
		}
		s := <-got
		want := ""
		if cn.HasUsername {
			want = string(cn.Username)
		}
		if s.ws || s.user != want {
			t.Fatalf("%s: WebSocket %v, Username %q", cn.ClientID, s.ws, s.user)
		}
		// Messages reach it under the limits it set.
		c.subscribe(1, QoS0, "to/"+string(cn.ClientID))
		b.Publish(&Message{Topic: "to/" + string(cn.ClientID), Payload: []byte("hi")})
		if p := c.expectPublish(); string(p.Payload) != "hi" {
			t.Fatalf("%s: got %q", cn.ClientID, p.Payload)
		}
	}
}

// copyClient copies *c as a hook that copies its Client does (cp := *c,
// which go vet's copylocks flags in the package's own tests).
func copyClient(c *Client) *Client {
	cp := new(Client)
	reflect.ValueOf(cp).Elem().Set(reflect.ValueOf(c).Elem())
	return cp
}

// A copy of a Client (made in OnConnect, where the connection's loop is
// the only goroutine touching it) acts on nothing: its Disconnect and
// GoingAway leave the connection open and touch none of its output (the
// copy's batched output is the one the connection returned to the pool,
// which a later act would write to and release again), while the
// Client's own Disconnect still ends it. For a connection with its own
// session and one with a session apart.
func TestClientCopyActsOnNothing(t *testing.T) {
	type pair struct{ real, cp *Client }
	got := make(chan pair, 1)
	b := startBroker(t, Config{Hooks: Hooks{OnConnect: func(c *Client, _ bool) {
		got <- pair{c, copyClient(c)}
	}}})
	for _, cn := range []*Connect{
		{Version: Version311, ClientID: []byte("own"), CleanStart: true},
		{Version: Version311, ClientID: []byte("apart")},
		{Version: Version5, ClientID: []byte("apart5"), Props: Properties{SessionExpiry: 60}},
	} {
		c := dial(t, b.addr, cn.Version)
		if ca := c.connect(cn); ca.ReasonCode != Success {
			t.Fatalf("%s: CONNACK %v", cn.ClientID, ca.ReasonCode)
		}
		p := <-got
		c.subscribe(1, QoS0, "t/"+string(cn.ClientID))
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.cp.Disconnect(AdministrativeAction, "from a copy")
			p.cp.GoingAway()
		}()
		<-done
		c.quiet(50 * time.Millisecond)
		b.Publish(&Message{Topic: "t/" + string(cn.ClientID), Payload: []byte("still here")})
		if m := c.expectPublish(); m.Payload != "still here" {
			t.Fatalf("%s: got %q", cn.ClientID, m.Payload)
		}
		p.real.Disconnect(AdministrativeAction, "")
		d := c.closed()
		if cn.Version == Version5 && (d == nil || d.ReasonCode != AdministrativeAction) {
			t.Fatalf("%s: closed with %+v", cn.ClientID, d)
		}
	}
}

// A copy's Disconnect during takeovers of its session does nothing to
// the connection that took it over, races with nothing and releases no
// pooled buffer twice.
func TestClientCopyDisconnectDuringTakeover(t *testing.T) {
	got := make(chan *Client, 1)
	b := startBroker(t, Config{Hooks: Hooks{OnConnect: func(c *Client, _ bool) {
		got <- copyClient(c)
	}}})
	for _, v := range versions {
		id := "dup-" + v.String()
		cn := func() *Connect {
			cn := &Connect{ClientID: []byte(id)}
			if v == Version5 {
				cn.Props.SessionExpiry = 60
			}
			return cn
		}
		old := dial(t, b.addr, v)
		if ca := old.connect(cn()); ca.ReasonCode != Success {
			t.Fatalf("CONNACK %v", ca.ReasonCode)
		}
		cp := <-got
		old.subscribe(1, QoS0, "t/"+id)
		for range 5 {
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					cp.Disconnect(AdministrativeAction, "from a copy")
					runtime.Gosched()
				}
			}()
			nc := dial(t, b.addr, v)
			ca := nc.connect(cn())
			close(stop)
			<-done
			if ca.ReasonCode != Success || !ca.SessionPresent {
				t.Fatalf("takeover CONNACK %+v", ca)
			}
			// The new connection's copy, before anything is delivered to
			// it: a copy made while another goroutine writes to the
			// connection is a data race of its own, which no check inside
			// the broker can undo (the Client's doc says so).
			next := <-got
			old.closed()
			cp.Disconnect(AdministrativeAction, "from a copy")
			b.Publish(&Message{Topic: "t/" + id, Payload: []byte("to the new one")})
			if m := nc.expectPublish(); m.Payload != "to the new one" {
				t.Fatalf("got %q", m.Payload)
			}
			old, cp = nc, next
		}
		old.send(&Disconnect{})
		old.closed()
	}
}

// A Client an application makes (to test an Authorize hook, say) has only
// the fields it was given: every method answers a zero value or does
// nothing, none dereferences the connection it does not have.
func TestApplicationClientZero(t *testing.T) {
	c := &Client{ID: "dev-1", Identity: "someone"}
	if c.Username() != "" || c.Version() != 0 || c.WebSocket() || c.Server() != nil ||
		c.Remote().IsValid() || c.ConnID() != 0 || c.Conn() != nil {
		t.Fatalf("user %q version %v ws %v server %v remote %v conn id %d conn %v",
			c.Username(), c.Version(), c.WebSocket(), c.Server(), c.Remote(), c.ConnID(), c.Conn())
	}
	c.Disconnect(AdministrativeAction, "")
	c.GoingAway()
	c.PauseRead()
	c.ResumeRead()
}

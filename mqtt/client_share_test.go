package mqtt

import (
	"testing"
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

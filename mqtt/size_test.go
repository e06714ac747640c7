package mqtt

import (
	"testing"
	"unsafe"
)

// The structs an idle subscribed client holds stay within their size
// classes: a field added carelessly shows here first.
func TestIdleStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"conn with its Client", unsafe.Sizeof(conn{}), 144},
		{"Client", unsafe.Sizeof(Client{}), 64},
		{"session", unsafe.Sizeof(session{}), 64},
		{"subscription", unsafe.Sizeof(subscription{}), 48},
		{"trie node", unsafe.Sizeof(node[*subscription]{}), 48},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, over %d", c.name, c.size, c.max)
		}
	}
}

// A user name equal to the client id is the client id's string, not a
// second copy of it (devices often send their id as both); another user
// name is its own.
func TestUsernameSharesClientID(t *testing.T) {
	type seen struct{ id, user string }
	got := make(chan seen, 2)
	b := startBroker(t, Config{Hooks: Hooks{OnConnect: func(c *Client, _ bool) { got <- seen{c.ID, c.Username} }}})
	for _, user := range []string{"dev-1", "someone"} {
		c := dial(t, b.addr, Version311)
		if ca := c.connect(&Connect{Version: Version311, ClientID: []byte("dev-1"), CleanStart: true,
			HasUsername: true, Username: []byte(user)}); ca.ReasonCode != Success {
			t.Fatal(ca.ReasonCode)
		}
		s := <-got
		if s.id != "dev-1" || s.user != user {
			t.Fatalf("client %q user %q; want dev-1, %q", s.id, s.user, user)
		}
		if shared := unsafe.StringData(s.id) == unsafe.StringData(s.user); shared != (user == "dev-1") {
			t.Fatalf("user name %q shares the client id's string: %v", user, shared)
		}
		c.c.Close()
	}
}

package websocket

import (
	"sync"
	"sync/atomic"

	"github.com/warrenhq/warren/internal/pool"
)

// LOCKS: Conn.mu is taken before Group.mu (Join, Leave); Hub.mu is never
// held together with either. Broadcast holds Group.mu only to copy the
// member list, then writes to each Conn under its own mu alone.

// Group is a set of connections that receive the same messages.
// Broadcast encodes a message once and writes the same frame bytes to
// every member; each connection's output queue and slow-consumer policy
// apply on their own, so one slow member never holds up the others. A
// connection leaves its groups when it closes. The zero value is an empty
// group ready to use; its methods are safe for concurrent use.
type Group struct {
	hub   *Hub   // set for a Hub topic
	topic string // the topic's name, when hub is set
	dead  atomic.Bool

	// mu guards members and index.
	mu      sync.Mutex
	members []*Conn
	index   map[*Conn]int
}

// Join adds c to g. It reports false when c has closed or begun its close
// handshake. Joining twice is harmless.
func (g *Group) Join(c *Conn) bool { return g.join(c) == joined }

type joinResult uint8

const (
	joined joinResult = iota
	connClosed
	groupDead
)

func (g *Group) join(c *Conn) joinResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closeSent {
		return connClosed
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead.Load() {
		return groupDead
	}
	if _, ok := g.index[c]; ok {
		return joined
	}
	if g.index == nil {
		g.index = make(map[*Conn]int)
	}
	g.index[c] = len(g.members)
	g.members = append(g.members, c)
	if c.groups == nil {
		c.groups = new([]*Group)
	}
	*c.groups = append(*c.groups, g)
	return joined
}

// Leave removes c from g; it is a no-op when c is not a member.
func (g *Group) Leave(c *Conn) {
	c.mu.Lock()
	if gs := c.groups; gs != nil {
		for i, x := range *gs {
			if x == g {
				last := len(*gs) - 1
				(*gs)[i] = (*gs)[last]
				(*gs)[last] = nil
				*gs = (*gs)[:last]
				break
			}
		}
	}
	c.mu.Unlock()
	g.remove(c)
}

// remove drops c from the member list, and an emptied topic from its hub.
func (g *Group) remove(c *Conn) {
	g.mu.Lock()
	i, ok := g.index[c]
	if !ok {
		g.mu.Unlock()
		return
	}
	last := len(g.members) - 1
	moved := g.members[last]
	g.members[i] = moved
	g.index[moved] = i
	g.members[last] = nil
	g.members = g.members[:last]
	delete(g.index, c)
	empty := last == 0 && g.hub != nil
	if empty {
		g.dead.Store(true)
		g.members, g.index = nil, nil
	}
	g.mu.Unlock()
	if empty {
		g.hub.drop(g)
	}
}

// Len returns the number of members.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.members)
}

// Broadcast sends data as one message of type op (OpText or OpBinary) to
// every member and returns how many accepted it. The frame is encoded once,
// uncompressed, and shared. Members whose close handshake has begun are
// skipped; a member over its output bound is closed by the engine's
// slow-consumer policy. Broadcast writes to each member in turn without
// blocking on any peer, but a large group costs the calling goroutine one
// write call per member: broadcast from a worker, not from an Inline
// handler, when groups are large.
func (g *Group) Broadcast(op Opcode, data []byte) int {
	if op != OpText && op != OpBinary {
		return 0
	}
	frame := AppendFrame(pool.Get(MaxHeaderLen + len(data))[:0], op, true, data)
	n := g.broadcastFrame(frame)
	pool.Put(frame)
	return n
}

// snapshots recycles the member lists Broadcast copies.
var snapshots = sync.Pool{New: func() any { return new([]*Conn) }}

func (g *Group) broadcastFrame(frame []byte) int {
	sp := snapshots.Get().(*[]*Conn)
	g.mu.Lock()
	members := append((*sp)[:0], g.members...)
	g.mu.Unlock()
	n := 0
	for _, c := range members {
		if c.writeFrame(frame) == nil {
			n++
		}
	}
	clear(members)
	*sp = members[:0]
	snapshots.Put(sp)
	return n
}

// Hub is a set of named topics, each a Group created when its first
// connection subscribes and dropped when its last one leaves. The zero
// value is ready to use; its methods are safe for concurrent use.
type Hub struct {
	// mu guards topics.
	mu     sync.Mutex
	topics map[string]*Group
}

// Subscribe adds c to topic. It reports false when c has closed or begun
// its close handshake.
func (h *Hub) Subscribe(topic string, c *Conn) bool {
	for {
		h.mu.Lock()
		g := h.topics[topic]
		if g == nil || g.dead.Load() {
			if h.topics == nil {
				h.topics = make(map[string]*Group)
			}
			g = &Group{hub: h, topic: topic}
			h.topics[topic] = g
		}
		h.mu.Unlock()
		switch g.join(c) {
		case joined:
			return true
		case connClosed:
			// Do not leave behind a topic created for c alone.
			h.dropIfEmpty(g)
			return false
		}
		// The group emptied between lookup and join: look again.
	}
}

// Unsubscribe removes c from topic; it is a no-op when c is not
// subscribed.
func (h *Hub) Unsubscribe(topic string, c *Conn) {
	h.mu.Lock()
	g := h.topics[topic]
	h.mu.Unlock()
	if g != nil {
		g.Leave(c)
	}
}

// Publish sends data as one message of type op to every subscriber of
// topic and returns how many accepted it; see Group.Broadcast.
func (h *Hub) Publish(topic string, op Opcode, data []byte) int {
	h.mu.Lock()
	g := h.topics[topic]
	h.mu.Unlock()
	if g == nil {
		return 0
	}
	return g.Broadcast(op, data)
}

// Subscribers returns the number of connections subscribed to topic.
func (h *Hub) Subscribers(topic string) int {
	h.mu.Lock()
	g := h.topics[topic]
	h.mu.Unlock()
	if g == nil {
		return 0
	}
	return g.Len()
}

// Topics returns the number of topics with at least one subscriber.
func (h *Hub) Topics() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.topics)
}

// drop removes a dead (emptied) group from the hub.
func (h *Hub) drop(g *Group) {
	h.mu.Lock()
	if h.topics[g.topic] == g {
		delete(h.topics, g.topic)
	}
	h.mu.Unlock()
}

// dropIfEmpty removes g from the hub if it has no member.
func (h *Hub) dropIfEmpty(g *Group) {
	g.mu.Lock()
	empty := len(g.members) == 0
	if empty {
		g.dead.Store(true)
	}
	g.mu.Unlock()
	if empty {
		h.drop(g)
	}
}

package mqtt

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Locks of the broker, in order (a lock on the left may be held while
// taking one on its right; nothing else nests):
//
//	Server.mu  ->  session.mu  ->  conn.wmu
//
// Server.mu (an RWMutex) guards the session table, the subscription trie,
// each session's subscription list, will and sweep state, and the retained
// messages; routing a message holds it for reading only while it looks up
// the subscribers. session.mu guards a session's delivery state: its
// connection, inflight and queued messages, packet identifiers and inbound
// QoS 2 state. conn.wmu guards a connection's output batching. No lock is
// held across a hook call, and engine.Conn.Write never blocks, so writing
// under session.mu is safe.

// Message is an application message: what a client published, or what the
// application injects with Server.Publish. The 5.0 properties are passed
// through to subscribers (5.0 subscribers only; 3.1.1 has none).
type Message struct {
	// Topic is the topic name (no wildcards).
	Topic string
	// Payload is the application message.
	Payload []byte
	// QoS is the publication's QoS; a subscriber gets the lower of it and
	// its subscription's.
	QoS QoS
	// Retain asks the broker to keep the message for future subscribers
	// (an empty payload deletes the retained message of the topic).
	Retain bool

	// PayloadFormat is 1 for UTF-8 text, 0 for bytes.
	PayloadFormat byte
	// MessageExpiry is the message's lifetime in seconds from when it is
	// published; 0 means it does not expire. Subscribers get what remains.
	MessageExpiry uint32
	// ContentType, ResponseTopic and CorrelationData are the 5.0
	// properties of the same names; User the user properties, in order.
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	User            []UserProperty
}

// msg is a routed message: an immutable copy shared by every session that
// holds it.
type msg struct {
	Message
	from    string // publishing client id, for no-local; "" if injected
	expires int64  // unix ns; 0 never
	size    int32  // bytes held, for the queue bounds; -1 for a transient message (routeMessage)
	// delay is a will message's will delay, seconds: the will is unique
	// to its session, which so needs no field for it.
	delay uint32
	// hi is the message's place in the retained store's expiry heap
	// plus one, 0 when it is not in it; guarded by Server.mu.
	hi int32
}

// newMsg copies m for routing: its topic, strings and bytes go to one
// buffer the copy owns, so m may be a view of a packet (routeMessage).
func newMsg(m *Message, from string, now time.Time) *msg {
	out := &msg{from: from}
	out.QoS, out.Retain = m.QoS, m.Retain
	out.PayloadFormat, out.MessageExpiry = m.PayloadFormat, m.MessageExpiry
	strs, n := msgBytes(m)
	buf := make([]byte, 0, strs+n)
	str := func(v string) string {
		if v == "" {
			return ""
		}
		off := len(buf)
		buf = append(buf, v...)
		return stringOf(buf[off:])
	}
	out.Topic, out.ContentType, out.ResponseTopic = str(m.Topic), str(m.ContentType), str(m.ResponseTopic)
	buf = buf[len(buf):len(buf)]
	buf = append(buf, m.Payload...)
	out.Payload = buf[:len(m.Payload):len(m.Payload)]
	if m.CorrelationData != nil {
		off := len(buf)
		buf = append(buf, m.CorrelationData...)
		out.CorrelationData = buf[off:len(buf):len(buf)]
	}
	if len(m.User) > 0 {
		out.User = make([]UserProperty, len(m.User))
		for i, u := range m.User {
			off := len(buf)
			buf = append(buf, u.Key...)
			k := buf[off:len(buf):len(buf)]
			off = len(buf)
			buf = append(buf, u.Value...)
			out.User[i] = UserProperty{Key: k, Value: buf[off:len(buf):len(buf)]}
		}
	}
	if m.MessageExpiry > 0 {
		out.expires = now.Add(time.Duration(m.MessageExpiry) * time.Second).UnixNano()
	}
	out.size = int32(96 + strs + n + 32*len(m.User)) // msgSize
	return out
}

// msgBytes returns the bytes of m's strings and of its other slices.
func msgBytes(m *Message) (strs, n int) {
	n = len(m.Payload) + len(m.CorrelationData)
	for _, u := range m.User {
		n += len(u.Key) + len(u.Value)
	}
	return len(m.Topic) + len(m.ContentType) + len(m.ResponseTopic), n
}

// msgSize returns the bytes a copy of m holds (newMsg), as the queue and
// retained bounds count them.
func msgSize(m *Message) int {
	strs, n := msgBytes(m)
	return 96 + strs + n + 32*len(m.User)
}

// msgPool holds the transient messages of routeMessage.
var msgPool = sync.Pool{New: func() any { return new(msg) }}

// getMsg returns a zero msg from the pool, for routeMessage.
func getMsg() *msg { return msgPool.Get().(*msg) }

// putMsg returns tm to the pool, dropping its views of the caller's
// buffers.
func putMsg(tm *msg) {
	*tm = msg{}
	msgPool.Put(tm)
}

// transient reports whether m is a view of the publisher's packet, valid
// only while it is routed (routeMessage): nothing may keep it.
func (m *msg) transient() bool { return m.size < 0 }

// persist returns a heap copy of a transient message, owning its topic,
// strings and bytes, with the same expiry and sender; m itself otherwise.
func (m *msg) persist() *msg {
	if !m.transient() {
		return m
	}
	out := newMsg(&m.Message, m.from, time.Time{})
	out.expires, out.delay = m.expires, m.delay
	return out
}

// routeMessage routes tm.Message (tm from getMsg, its Message filled in;
// the caller puts it back) from the client from (its id; "" if injected)
// and returns the number of sessions it went to; retain stores it as the
// topic's retained message first. A QoS 0 message not stored is routed as
// tm itself, a transient view — no copy of its topic, payload or
// properties, which the caller owns — since every delivery of it is QoS 0,
// written to the subscriber's connection during the call and kept
// nowhere. Any other message is copied to the heap once and shared by
// whatever keeps it (retained store, offline queues, QoS 1 and 2 in
// flight). res, when not nil, is the room reserved for it in the store
// (reserveRetained), which then takes it. refused reports that the
// store's bounds refused to retain it: it is routed all the same, as a
// message without the retain flag.
func (s *Server) routeMessage(tm *msg, retain bool, res *pending, from string, now time.Time, loop int) (n int, refused bool) {
	t := now.UnixNano()
	if tm.QoS != QoS0 || retain {
		mm := newMsg(&tm.Message, from, now)
		if retain {
			if refused = s.retain(mm, res); refused {
				mm.Retain = false
			}
		}
		return s.route(mm, t, loop), refused
	}
	tm.from, tm.size, tm.expires = from, -1, 0
	if tm.MessageExpiry > 0 {
		tm.expires = now.Add(time.Duration(tm.MessageExpiry) * time.Second).UnixNano()
	}
	return s.route(tm, t, loop), false
}

// expired reports whether m has expired at now (unix ns).
func (m *msg) expired(now int64) bool { return m.expires != 0 && now >= m.expires }

// subscription is one subscription of a session, the value of the trie.
// Its fields take 20 bytes and its filter (as subscribed, with
// $share/group/ if shared) follows them in the same allocation, from
// subSize on (newSub, filter): an idle subscribed client holds one, and a
// 32-byte object holds a filter of up to 12 bytes (idle/12345), a 48-byte
// one up to 28 (devices/dev-12345/commands/+). A subscription with an
// identifier (5.0), or with a filter longer than maxInlineFilter, is long:
// a subLong follows its 24 bytes instead, with the filter apart.
type subscription struct {
	sess *session
	next *subscription // the session's next subscription, guarded by Server.mu
	// tf is where the topic filter starts in the filter (after
	// $share/group/), 0 if not shared; a long subscription's tf over 255
	// is in its subLong, and tf is 255.
	tf    uint8
	qos   QoS
	flags subFlags
	n     uint8   // the filter's length, when it is inline
	head  [4]byte // the first bytes of an inline filter, which runs on past the struct
}

// subFlags are a subscription's options.
type subFlags uint8

const (
	subNoLocal subFlags = 1 << iota // no local (5.0)
	subRAP                          // retain as published (5.0)
	subIsLong                       // a subLong follows the subscription
)

// subLong follows a long subscription in its object.
type subLong struct {
	filter string
	id     uint32 // the subscription identifier (5.0), 0 if none
	tf     uint16
}

// subSize is where a subscription's inline filter starts.
const subSize = unsafe.Offsetof(subscription{}.head)

// maxInlineFilter is the longest filter kept in its subscription's
// allocation.
const maxInlineFilter = 128

// The largest object allocSub makes holds maxInlineFilter bytes, and a
// subscription's n (a uint8) counts them: both fail to compile if
// maxInlineFilter grows past them.
var (
	_ [unsafe.Sizeof(subscription{}) - subSize + 136 - maxInlineFilter]byte
	_ [255 - maxInlineFilter]byte
)

// newSubscription returns a subscription of ss to filter (as subscribed,
// with $share/group/ if shared), without an identifier: newSub.
func newSubscription(ss *session, filter string) *subscription {
	return newSub(ss, filter, 0)
}

// newSub returns a subscription of ss to filter with the subscription
// identifier id (0 if none) that owns a copy of the filter, made in the
// same allocation from subSize on when the subscription is not long
// (allocSub: each object is a size class). A long one's filter is copied
// apart and its string header follows the subscription (subLong). A
// routed message found in Server.lit is compared with its subscription's
// filter: there the filter sits on the subscription's cache line instead
// of a line of its own. Every subscription is made here: filter reads what
// follows it. The caller sets tf (setTF) and the options.
func newSub(ss *session, filter string, id uint32) *subscription {
	if len(filter) > maxInlineFilter || id != 0 {
		x := new(struct {
			sub subscription
			x   subLong
		})
		x.x.filter, x.x.id = strings.Clone(filter), id // filter may be a view of the packet
		x.sub.sess, x.sub.flags = ss, subIsLong
		return &x.sub
	}
	sub := allocSub(len(filter))
	copy(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(sub), subSize)), len(filter)), filter)
	sub.sess, sub.n = ss, uint8(len(filter))
	return sub
}

// allocSub returns a zero subscription in an object with room for an
// inline filter of n bytes (at most maxInlineFilter) from subSize on: the
// object is the smallest size class that holds subSize+n bytes.
func allocSub(n int) *subscription {
	const room = unsafe.Sizeof(subscription{}) - subSize // inline bytes inside the struct
	switch k := uintptr(n); {
	case k <= room+8:
		return subWith[[8]byte]()
	case k <= room+24:
		return subWith[[24]byte]()
	case k <= room+40:
		return subWith[[40]byte]()
	case k <= room+56:
		return subWith[[56]byte]()
	case k <= room+72:
		return subWith[[72]byte]()
	case k <= room+88:
		return subWith[[88]byte]()
	case k <= room+104:
		return subWith[[104]byte]()
	case k <= room+120:
		return subWith[[120]byte]()
	default:
		return subWith[[136]byte]() // 160 bytes: room for maxInlineFilter
	}
}

// subWith allocates a subscription followed by the bytes of T, in one
// object.
func subWith[T any]() *subscription {
	return &new(struct {
		sub subscription
		_   T
	}).sub
}

// long returns the subLong that follows a long subscription.
func (sub *subscription) long() *subLong {
	return (*subLong)(unsafe.Add(unsafe.Pointer(sub), unsafe.Sizeof(subscription{})))
}

// filter returns the filter as subscribed, with $share/group/ if shared.
func (sub *subscription) filter() string {
	if sub.flags&subIsLong != 0 {
		return sub.long().filter
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(sub), subSize)), int(sub.n))
}

// id returns the subscription identifier (5.0), or 0.
func (sub *subscription) id() uint32 {
	if sub.flags&subIsLong == 0 {
		return 0
	}
	return sub.long().id
}

// setTF sets where the topic filter starts in the filter: tf bytes in.
func (sub *subscription) setTF(tf int) {
	sub.tf = uint8(min(tf, 255))
	if sub.flags&subIsLong != 0 {
		sub.long().tf = uint16(tf)
	}
}

// topicStart returns where the topic filter starts in the filter.
func (sub *subscription) topicStart() int {
	if sub.tf == 255 && sub.flags&subIsLong != 0 {
		return int(sub.long().tf)
	}
	return int(sub.tf)
}

// noLocal reports the No Local option (5.0).
func (sub *subscription) noLocal() bool { return sub.flags&subNoLocal != 0 }

// rap reports the Retain As Published option (5.0).
func (sub *subscription) rap() bool { return sub.flags&subRAP != 0 }

// setOptions sets the subscription's QoS and its 5.0 options.
func (sub *subscription) setOptions(qos QoS, noLocal, rap bool) {
	sub.qos = qos
	sub.flags &^= subNoLocal | subRAP
	if noLocal {
		sub.flags |= subNoLocal
	}
	if rap {
		sub.flags |= subRAP
	}
}

// topicFilter returns the filter matched against topics.
func (sub *subscription) topicFilter() string { return sub.filter()[sub.topicStart():] }

// group returns the share group, or "" if the subscription is not shared.
func (sub *subscription) group() string {
	if sub.tf == 0 {
		return ""
	}
	return sub.filter()[len(sharePrefix) : sub.topicStart()-1]
}

// outflight is a QoS 1 or 2 message sent to the client and not yet
// acknowledged (or queued to be sent when the window opens: then id is 0).
type outflight struct {
	m      *msg
	id     uint16
	qos    QoS
	retain bool
	ids    []uint32 // subscription identifiers
	rel    bool     // QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP
}

// session is a client's state, which outlives its connections unless it
// is clean. It is 48 bytes: an idle subscribed client holds one, so what
// few sessions need lives elsewhere (the QoS 1 and 2 state behind fl, the
// time a session went offline in Server.offline, the will delay in the
// will), and the server is passed to its methods rather than kept. A
// session that ends with its connection (expiry 0 at CONNECT) is part of
// the connection's allocation (conn.own) and keyed by its Client's id; one
// that may outlive it is an ownSession, with its id (newSession).
type session struct {
	// Guarded by Server.mu.
	// (The session's pending will is in Server.wills: few have one.)
	subs   *subscription // the subscriptions, linked by next
	expiry uint32        // seconds the session outlives its connection; 0xffffffff never
	nsubs  uint16        // how many subscriptions (Config.MaxSubscriptions is at most 65535)

	// inConn is set once, before the session is shared: it is a conn's
	// own session (key).
	inConn bool

	// mu guards the delivery state below.
	dead bool // ended: deliveries are dropped
	mu   sync.Mutex
	conn *conn // the connected client, nil while offline
	fl   *flow // QoS 1 and 2 state; nil while there is none (f allocates it)
}

// ownSession is a session allocated apart from any connection, with its
// client id: one that may outlive its connection.
type ownSession struct {
	session
	id string
}

// newSession returns a session, apart from any connection, of the client
// id.
func newSession(id string) *session {
	o := &ownSession{id: id}
	return &o.session
}

// ownOffset is where a conn holds its own session.
const ownOffset = unsafe.Offsetof(conn{}.own)

// key returns the session's client id: the Client's of the connection it
// is part of, or its own.
func (ss *session) key() string {
	if ss.inConn {
		return (*conn)(unsafe.Add(unsafe.Pointer(ss), -int(ownOffset))).client().ID
	}
	return (*ownSession)(unsafe.Pointer(ss)).id
}

// findSub returns the session's subscription to filter (as subscribed)
// and the one before it in the list; s.mu is held.
func (ss *session) findSub(filter string) (prev, sub *subscription) {
	for sub = ss.subs; sub != nil; prev, sub = sub, sub.next {
		if sub.filter() == filter {
			return prev, sub
		}
	}
	return nil, nil
}

// linkSub adds sub to the session's list in place of old (after prev), or
// at the front when old is nil; s.mu is held.
func (ss *session) linkSub(prev, old, sub *subscription) {
	if old == nil {
		sub.next = ss.subs
		ss.subs = sub
		ss.nsubs++
		return
	}
	sub.next = old.next
	old.next = nil
	if prev == nil {
		ss.subs = sub
	} else {
		prev.next = sub
	}
}

// unlinkSub removes sub (after prev) from the session's list; s.mu is held.
func (ss *session) unlinkSub(prev, sub *subscription) {
	if prev == nil {
		ss.subs = sub.next
	} else {
		prev.next = sub.next
	}
	sub.next = nil
	ss.nsubs--
}

// flow is a session's QoS 1 and 2 state, apart so that a session without
// messages in flight (most idle ones) does not carry it.
type flow struct {
	inflight []outflight
	queue    []outflight
	qbytes   int // bytes of queue and inflight messages
	nextID   uint16
	inQoS2   []uint16 // QoS 2 packet ids received, awaiting PUBREL
}

// flowPool holds flow states between their sessions' messages: a client
// publishing QoS 1 to itself makes and drops one per message otherwise,
// with its inflight slice.
var flowPool = sync.Pool{New: func() any { return new(flow) }}

// maxPooledFlowCap bounds the inflight slice a pooled flow keeps.
const maxPooledFlowCap = 16

// f returns the session's flow state, making it; ss.mu is held.
func (ss *session) f() *flow {
	if ss.fl == nil {
		ss.fl = flowPool.Get().(*flow)
	}
	return ss.fl
}

// tidy drops the flow state once it holds nothing; ss.mu is held.
func (ss *session) tidy() {
	if f := ss.fl; f != nil && len(f.inflight) == 0 && len(f.queue) == 0 && len(f.inQoS2) == 0 && f.qbytes == 0 {
		// nextID restarts at 1: no identifier is in use.
		ss.fl = nil
		putFlow(f)
	}
}

// putFlow returns f, which its session dropped, to the pool: it keeps a
// small inflight slice (cleared), nothing else.
func putFlow(f *flow) {
	in := f.inflight[:0]
	if cap(in) > maxPooledFlowCap {
		in = nil
	}
	clear(in[:cap(in)])
	*f = flow{inflight: in}
	flowPool.Put(f)
}

// window returns how many messages may be inflight to the client; s.mu is
// held and s.conn is not nil.
func (ss *session) window(s *Server) int {
	return min(int(ss.conn.recvMax()), s.cfg.MaxInflight)
}

// packetID returns a packet identifier not in flight; s.mu is held.
func (ss *session) packetID() uint16 {
	for {
		ss.f().nextID++
		if ss.f().nextID == 0 {
			ss.f().nextID = 1
		}
		if ss.findOut(ss.f().nextID) < 0 {
			return ss.f().nextID
		}
	}
}

// findOut returns the index of the inflight message with id, or -1.
func (ss *session) findOut(id uint16) int {
	for i := range ss.f().inflight {
		if ss.fl.inflight[i].id == id {
			return i
		}
	}
	return -1
}

// account adds n bytes (and k messages) to the queued totals; ss.mu is
// held. They move in the shard of the client's loop (the first while it
// is offline), where its acknowledgements are handled and, when it
// publishes to itself, its messages routed.
func (ss *session) account(s *Server, n, k int) {
	ss.f().qbytes += n
	i := 0
	if c := ss.conn; c != nil {
		i = c.ec.Loop()
	}
	q := &s.queued[i&(len(s.queued)-1)]
	q.bytes.Add(int64(n))
	q.msgs.Add(int64(k))
}

// deliver hands m to the session at qos (already the minimum of the
// message's and the subscription's), with the retain flag to send and
// the subscription identifiers matched. It sends at once when the client
// is online and its window has room; else it queues QoS 1 and 2 within the
// bounds, and drops QoS 0 for an offline client.
func (ss *session) deliver(s *Server, m *msg, qos QoS, retain bool, ids []uint32, now int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.dead {
		return
	}
	c := ss.conn
	if qos > QoS0 {
		defer ss.tidy()
	}
	if qos == QoS0 {
		if c == nil {
			s.drop(DropOffline)
			return
		}
		c.sendPublish(m, 0, 0, false, retain, ids, now)
		return
	}
	// Only QoS 0 messages are transient and they are delivered at QoS 0:
	// this copy is a guard, never taken.
	m = m.persist()
	if c != nil && len(ss.f().queue) == 0 && len(ss.f().inflight) < ss.window(s) {
		id := ss.packetID()
		if c.sendPublish(m, qos, id, false, retain, ids, now) {
			ss.f().inflight = append(ss.f().inflight, outflight{m: m, id: id, qos: qos, retain: retain, ids: slices.Clone(ids)})
			ss.account(s, int(m.size), 1)
		}
		return
	}
	switch {
	case len(ss.f().queue) >= s.cfg.MaxQueuedMessages || ss.f().qbytes+int(m.size) > s.cfg.MaxQueuedBytes:
		s.drop(DropQueueFull)
		return
	case s.cfg.MaxQueuedBytesTotal > 0 && s.queuedBytes()+int64(m.size) > s.cfg.MaxQueuedBytesTotal:
		s.drop(DropTotalQueueFull)
		return
	}
	ss.f().queue = append(ss.f().queue, outflight{m: m, qos: qos, retain: retain, ids: slices.Clone(ids)})
	ss.account(s, int(m.size), 1)
}

// pump sends queued messages while the window has room; s.mu is held.
func (ss *session) pump(s *Server, now int64) {
	c := ss.conn
	if c == nil {
		return
	}
	for len(ss.f().queue) > 0 && len(ss.f().inflight) < ss.window(s) {
		o := ss.f().queue[0]
		ss.f().queue[0] = outflight{}
		ss.f().queue = ss.f().queue[1:]
		o.id = ss.packetID()
		if c.sendPublish(o.m, o.qos, o.id, false, o.retain, o.ids, now) {
			ss.f().inflight = append(ss.f().inflight, o)
		} else {
			ss.account(s, -int(o.m.size), -1)
		}
	}
	if len(ss.f().queue) == 0 {
		ss.f().queue = nil
	}
}

// resend sends the inflight messages again after a reconnect: PUBLISH
// with DUP for those unacknowledged, PUBREL for QoS 2 ones past PUBREC;
// then what is queued. s.mu is held.
func (ss *session) resend(s *Server, now int64) {
	c := ss.conn
	keep := ss.f().inflight[:0]
	for _, o := range ss.f().inflight {
		if o.rel {
			c.sendAck(TypePubrel, o.id, Success)
			keep = append(keep, o)
			continue
		}
		if c.sendPublish(o.m, o.qos, o.id, true, o.retain, o.ids, now) {
			keep = append(keep, o)
		} else {
			ss.account(s, -int(o.m.size), -1)
		}
	}
	clear(ss.f().inflight[len(keep):])
	ss.f().inflight = keep
	// The client may have lowered its Receive Maximum: messages over the
	// new window stay inflight (they were sent), and pump waits.
	ss.pump(s, now)
}

// acked handles PUBACK, PUBREC and PUBCOMP from the client. It returns
// false when no message is inflight with id (or in the wrong state).
func (ss *session) acked(s *Server, c *conn, kind Type, id uint16, code ReasonCode, now int64) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	defer ss.tidy()
	if ss.conn != c {
		return true // taken over: the new connection owns the state
	}
	i := ss.findOut(id)
	if i < 0 {
		return false
	}
	o := &ss.f().inflight[i]
	switch kind {
	case TypePuback:
		if o.qos != QoS1 {
			return false
		}
	case TypePubrec:
		if o.qos != QoS2 || o.rel {
			if o.rel {
				c.sendAck(TypePubrel, id, Success) // a repeated PUBREC
				return true
			}
			return false
		}
		if code.IsError() {
			break // the client refused it: the flow ends here
		}
		o.rel = true
		c.sendAck(TypePubrel, id, Success)
		return true
	case TypePubcomp:
		if !o.rel {
			return false
		}
	}
	size := int(o.m.size)
	ss.f().inflight = slices.Delete(ss.f().inflight, i, i+1) // zeroes the freed element
	ss.account(s, -size, -1)
	ss.pump(s, now)
	return true
}

// release drops every queued and inflight message of a session that ends.
func (ss *session) release(s *Server) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.dead = true
	f := ss.fl
	if f == nil {
		return
	}
	n := len(f.queue) + len(f.inflight)
	for range n {
		s.drop(DropSessionEnded)
	}
	ss.account(s, -f.qbytes, -n)
	ss.fl = nil
	putFlow(f)
}

// route delivers m to every matching subscription and returns the number of
// sessions it went to; loop is the index of the caller's event loop (any
// number off the loops), for its shard of Server.mu. A session with several matching subscriptions gets
// it once, at the highest QoS, with every subscription identifier; a share
// group gets it once, at one of its members (online ones first, in turn).
func (s *Server) route(m *msg, now int64, loop int) int {
	// The matches go to an array on the stack (a topic's own subscriber,
	// a few wildcards); more spill to the heap.
	var arr [8]*subscription
	subs := arr[:0]
	mu := s.mu.rlock(loop)
	subs = s.matching(m.Topic, subs)
	mu.RUnlock()
	n := 0
	shared := false
	// A session with several matching subscriptions gets the message once:
	// sorting by session puts its subscriptions side by side, without a
	// map however many subscribers match.
	if len(subs) > 1 {
		slices.SortFunc(subs, func(a, b *subscription) int {
			return cmp.Compare(uintptr(unsafe.Pointer(a.sess)), uintptr(unsafe.Pointer(b.sess)))
		})
	}
	for i := 0; i < len(subs); {
		ss := subs[i].sess
		j := i + 1
		for j < len(subs) && subs[j].sess == ss {
			j++
		}
		var qos QoS
		var rap, match bool
		var ids []uint32
		for _, o := range subs[i:j] {
			switch {
			case o.tf != 0:
				shared = true
				continue
			case o.noLocal() && ss.key() == m.from:
				continue
			}
			qos, rap, match = max(qos, o.qos), rap || o.rap(), true
			if id := o.id(); id != 0 {
				ids = append(ids, id)
			}
		}
		if match {
			s.deliverTo(ss, m, qos, rap, ids, now)
			n++
		}
		i = j
	}
	if shared && !s.cfg.ExternalShares {
		n += s.routeShared(m, subs, now)
	}
	return n
}

// matching appends the subscriptions whose filter matches topic to subs;
// s.mu is held (for reading at least).
func (s *Server) matching(topic string, subs []*subscription) []*subscription {
	if sub := s.lit.Get(topic); sub != nil {
		subs = append(subs, sub)
	}
	if s.litPlus > 0 {
		// A filter P/+ (P without wildcards) in s.lit matches the topic
		// P/level.
		if i := strings.LastIndexByte(topic, '/'); i >= 0 {
			if sub := s.lit.GetJoin(topic[:i+1], "+"); sub != nil {
				subs = append(subs, sub)
			}
		}
	}
	s.subs.Lookup(topic, func(_ string, sub *subscription) bool {
		subs = append(subs, sub)
		return true
	})
	return subs
}

// deliverTo delivers m to one session.
func (s *Server) deliverTo(ss *session, m *msg, qos QoS, rap bool, ids []uint32, now int64) {
	// Messages are forwarded with retain 0 unless the subscription asks
	// for retain as published (5.0 3.3.1.3).
	ss.deliver(s, m, min(qos, m.QoS), m.Retain && rap, ids, now)
}

// routeShared delivers m once to each share group among subs.
func (s *Server) routeShared(m *msg, subs []*subscription, now int64) int {
	groups := make(map[string][]*subscription)
	for _, sub := range subs {
		if sub.tf != 0 {
			k := sub.filter() // $share/group/filter: one group of one filter
			groups[k] = append(groups[k], sub)
		}
	}
	n := 0
	for _, members := range groups {
		start := int(s.shareNext.Add(1))
		var pick *subscription
		for i := range members {
			sub := members[(start+i)%len(members)]
			sub.sess.mu.Lock()
			online := sub.sess.conn != nil
			sub.sess.mu.Unlock()
			if online {
				pick = sub
				break
			}
		}
		if pick == nil {
			pick = members[start%len(members)]
		}
		var ids []uint32
		if id := pick.id(); id != 0 {
			ids = []uint32{id}
		}
		s.deliverTo(pick.sess, m, pick.qos, pick.rap(), ids, now)
		n++
	}
	return n
}

// PublishShared delivers m to one member of one share group on this
// broker — share is the group's filter as subscribed,
// $share/group/filter — online members first, in turn, as the broker's own
// routing does, and returns 1, or 0 when the group has no member here or
// its filter does not match m's topic. m is delivered, not stored: its
// Retain flag reaches only a member whose subscription asks for Retain As
// Published. It is for
// Config.ExternalShares, where the application has picked this broker's
// group for the message; Hooks.OnPublish does not see it. m is copied.
func (s *Server) PublishShared(m *Message, share string) (int, error) {
	group, filter, ok := ParseShared(share)
	if !ok {
		return 0, ErrShare
	}
	if !ValidTopicName(m.Topic) {
		return 0, ErrTopic
	}
	if m.QoS > QoS2 {
		return 0, ErrQoS
	}
	if !Match(filter, m.Topic) {
		return 0, nil
	}
	var arr [8]*subscription
	subs := arr[:0]
	mu := s.mu.rlock(0)
	subs = s.matching(m.Topic, subs)
	mu.RUnlock()
	members := subs[:0]
	for _, sub := range subs {
		if sub.tf != 0 && sub.group() == group && sub.topicFilter() == filter {
			members = append(members, sub)
		}
	}
	if len(members) == 0 {
		return 0, nil
	}
	now := s.now()
	tm := getMsg()
	defer putMsg(tm)
	tm.Message = *m
	mm := tm
	if tm.QoS != QoS0 {
		mm = newMsg(&tm.Message, "", now)
	} else {
		tm.from, tm.size, tm.expires = "", -1, 0
		if tm.MessageExpiry > 0 {
			tm.expires = now.Add(time.Duration(tm.MessageExpiry) * time.Second).UnixNano()
		}
	}
	return s.routeShared(mm, members, now.UnixNano()), nil
}

// Publish injects m into the broker from the application (a command for a
// device, a message from another node): it is retained if m.Retain says so
// and delivered to the local subscribers, and returns how many sessions
// it went to. Hooks.OnPublish does not see it. m is copied; the topic
// must be a valid topic name (ErrTopic otherwise).
func (s *Server) Publish(m *Message) (int, error) {
	if !ValidTopicName(m.Topic) {
		return 0, ErrTopic
	}
	if m.QoS > QoS2 {
		return 0, ErrQoS
	}
	tm := getMsg()
	tm.Message = *m
	n, _ := s.routeMessage(tm, m.Retain, nil, "", s.now(), 0)
	putMsg(tm)
	return n, nil
}

// sweep expires offline sessions, publishes delayed wills due at now and
// closes WebSocket clients silent for 1.5 times their keep-alive.
func (s *Server) sweep(now time.Time) {
	t := now.UnixNano()
	var wills []*msg
	var silent []*conn
	s.mu.Lock()
	s.expireRetained(t)
	for c := range s.wsKeepAlive {
		if s.since(c.lastIn(), t) >= c.keepAlive()*3/2 {
			silent = append(silent, c)
			delete(s.wsKeepAlive, c)
		}
	}
	for ss, offAt := range s.offline {
		if w := s.wills[ss]; w != nil && t >= offAt+int64(min(w.delay, ss.expiry))*int64(time.Second) {
			wills = append(wills, w)
			s.setWill(ss, nil)
		}
		if ss.expiry != maxSessionExpirySecondsV5 && t >= offAt+int64(ss.expiry)*int64(time.Second) {
			if w := s.wills[ss]; w != nil {
				wills = append(wills, w)
				s.setWill(ss, nil)
			}
			s.endSessionLocked(ss)
			s.stats.offline.Add(-1)
			continue
		}
		if s.wills[ss] == nil && ss.expiry == maxSessionExpirySecondsV5 {
			delete(s.offline, ss)
		}
	}
	s.mu.Unlock()
	for _, c := range silent {
		s.stats.keepAlive.Add(1)
		c.kick(KeepAliveTimeout, "keep-alive timeout")
	}
	for _, w := range wills {
		s.publishWill(w, now)
	}
}

// setWill makes w (nil: none) the pending will of ss, moving the will
// bytes held (Config.MaxWillBytes) from its old one; s.mu is held. A will
// taken out to be published no longer counts: it is then the route's, or
// the retained store's.
func (s *Server) setWill(ss *session, w *msg) {
	if old := s.wills[ss]; old != nil {
		s.willBytes -= int64(old.size)
		s.stats.willsHeld.Add(-1)
		if w == nil {
			delete(s.wills, ss)
		}
	}
	if w != nil {
		s.willBytes += int64(w.size)
		s.stats.willsHeld.Add(1)
		s.wills[ss] = w
		s.willsPeak = max(s.willsPeak, len(s.wills))
	} else if n := len(s.wills); s.willsPeak >= willsShrinkPeak && n < s.willsPeak/8 {
		// After a peak (a reconnect storm, a fleet gone offline) the map
		// keeps its memory: make it anew at its size. Copying n entries
		// once the peak has fallen by 7n costs O(1) a removal.
		m := make(map[*session]*msg, n)
		for k, v := range s.wills {
			m[k] = v
		}
		s.wills, s.willsPeak = m, n
	}
	s.stats.willBytes.Store(s.willBytes)
}

// willsShrinkPeak is the least peak of Server.wills that setWill shrinks
// the map from: below it (about 24 KB of map) the memory kept is too
// little to be worth a copy.
const willsShrinkPeak = 1024

// endSessionLocked removes ss and its subscriptions; s.mu is held. The
// caller counts the session out of the online or offline gauge.
func (s *Server) endSessionLocked(ss *session) {
	for sub := ss.subs; sub != nil; {
		s.unindex(sub)
		next := sub.next
		sub.next = nil
		sub = next
	}
	s.stats.subscriptions.Add(-int64(ss.nsubs))
	ss.subs, ss.nsubs = nil, 0
	s.setWill(ss, nil) // (its callers have taken it out already)
	s.sessions.Remove(ss)
	delete(s.offline, ss)
	ss.release(s)
}

// publishWill publishes a will message. A retained will the store won't
// keep goes out as a plain message, as a QoS 0 or 3.1.1 client's PUBLISH
// does: nobody is left to be told of the refusal.
func (s *Server) publishWill(w *msg, now time.Time) {
	s.stats.wills.Add(1)
	if w.MessageExpiry > 0 {
		// Its Message Expiry counts from its publication, not from the
		// CONNECT that brought it (5.0 3.1.3.2.4).
		w.expires = now.Add(time.Duration(w.MessageExpiry) * time.Second).UnixNano()
	}
	var res *pending
	if w.Retain && len(w.Payload) > 0 {
		var why DropReason
		var ok bool
		if res, why, ok = s.reserveRetained(w.from, w.Topic, int(w.size)); !ok {
			s.drop(why)
			w.Retain = false
		}
	}
	if h := s.cfg.Hooks.OnWill; h != nil {
		h(w.from, &w.Message)
	}
	switch {
	case w.Retain:
		s.retain(w, res)
	case res != nil:
		s.releaseRetained(res)
	}
	s.route(w, now.UnixNano(), 0)
}

// tableKey keys a session in Server.sessions.
func (ss *session) TableKey() string { return ss.key() }

// tableKey keys a subscription in Server.lit.
func (sub *subscription) TableKey() string { return sub.topicFilter() }

// tableable reports whether a topic filter may be indexed in s.lit: a
// literal filter, found by the topic itself, or P/+ with P literal (a
// device's devices/<id>/commands/+), found by the topic's levels but the
// last and "/+".
func tableable(tf string) bool {
	if len(tf) >= 2 && tf[len(tf)-2:] == "/+" {
		tf = tf[:len(tf)-2]
	}
	return !hasWildcard(tf)
}

// plusLast reports whether a tableable filter ends in /+.
func plusLast(tf string) bool { return len(tf) >= 2 && tf[len(tf)-1] == '+' }

// litPut puts sub in s.lit, litDel takes it out (reporting whether it
// was there), counting the P/+ filters in it.
func (s *Server) litPut(sub *subscription) {
	s.lit.Put(sub)
	if plusLast(sub.topicFilter()) {
		s.litPlus++
	}
}

func (s *Server) litDel(sub *subscription) bool {
	if !s.lit.Remove(sub) {
		return false
	}
	if plusLast(sub.topicFilter()) {
		s.litPlus--
	}
	return true
}

// index adds sub to the subscription index in place of old, the session's
// subscription to the same filter (nil if none); s.mu is held. A
// tableable filter's only subscriber takes one slot of s.lit; a second
// subscriber to the filter moves the first to the trie, where both stay.
func (s *Server) index(old, sub *subscription) {
	tf := sub.topicFilter()
	if h := s.cfg.Hooks.OnFilter; h != nil && old == nil && !s.hasFilter(tf) {
		defer h(tf, true)
	}
	if h := s.cfg.Hooks.OnShare; h != nil && old == nil && sub.tf != 0 {
		if s.shares == nil {
			s.shares = make(map[string]int)
		}
		k := sub.filter()
		if s.shares[k]++; s.shares[k] == 1 {
			defer h(k, true)
		}
	}
	key := func(sub *subscription) string { return subKey(sub.group(), sub.sess.key()) }
	switch {
	case !tableable(tf):
	case old != nil:
		if s.lit.Replace(old, sub) {
			return
		}
		// old is in the trie, where Insert replaces it.
	default:
		if o := s.lit.Get(tf); o != nil {
			s.litDel(o)
			s.subs.Insert(tf, key(o), o)
		} else if !s.subs.hasSubscribers(tf) {
			s.litPut(sub)
			return
		}
	}
	s.subs.Insert(tf, key(sub), sub)
}

// unindex removes sub from the subscription index; s.mu is held.
func (s *Server) unindex(sub *subscription) {
	if h := s.cfg.Hooks.OnShare; h != nil && sub.tf != 0 {
		k := sub.filter()
		if s.shares[k]--; s.shares[k] <= 0 {
			delete(s.shares, k)
			defer h(k, false)
		}
	}
	tf := sub.topicFilter()
	if tableable(tf) && s.litDel(sub) {
		// A filter in s.lit has no other subscriber.
		if h := s.cfg.Hooks.OnFilter; h != nil {
			h(tf, false)
		}
		return
	}
	s.subs.Remove(tf, subKey(sub.group(), sub.sess.key()))
	if h := s.cfg.Hooks.OnFilter; h != nil && !s.hasFilter(tf) {
		h(tf, false)
	}
}

// hasFilter reports whether a subscription to topic filter tf (without a
// share prefix) is indexed; s.mu is held.
func (s *Server) hasFilter(tf string) bool {
	return (tableable(tf) && s.lit.Get(tf) != nil) || s.subs.hasSubscribers(tf)
}

// subKey is a subscription's key in the trie: the client id, prefixed by
// the share group for shared subscriptions.
func subKey(group, clientID string) string {
	if group == "" {
		return clientID
	}
	return "\x00" + group + "\x00" + clientID
}

package tlsx

import (
	"net/netip"
	"sync"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/ipkey"
	"github.com/warrenhq/warren/upstream"
)

// flapGuard bans flapping clients: an IP whose connections keep ending
// soon after they open (a failed or abandoned handshake, or a connection
// closed within Config.BanLifetime of opening) more than
// Config.BanThreshold times over Config.BanWindow is refused for
// Config.BanDuration, at admission, before any TLS work.
//
// Flaps are counted per IP in a leaky bucket (upstream.KeyedLimiter, a
// bounded LRU table: rate BanThreshold per BanWindow, depth BanThreshold),
// so a client flapping slower than the threshold over any window is never
// banned, and one that stops is forgotten. Bans are a bounded map with a
// FIFO of their ends: every ban lasts BanDuration, so the FIFO is in the
// order they expire, and when the table is full the ban closest to its end
// is dropped first. Time is passed in (the Server's clock); nothing here
// reads it. Safe for concurrent use.
type flapGuard struct {
	banFor   time.Duration
	lifetime time.Duration
	maxBans  int
	flaps    *upstream.KeyedLimiter[netip.Addr]

	// mu guards bans and queue.
	mu    sync.Mutex
	bans  map[netip.Addr]int64 // ban end, unix nanoseconds
	queue []banEntry           // bans in the order they were imposed (and end)
	head  int                  // first live entry of queue
}

type banEntry struct {
	ip  netip.Addr
	end int64
}

func newFlapGuard(c Config) *flapGuard {
	return &flapGuard{
		banFor:   c.BanDuration,
		lifetime: c.BanLifetime,
		maxBans:  c.BanTableSize,
		flaps: upstream.NewKeyedLimiter[netip.Addr](upstream.KeyedConfig{
			Rate:  float64(c.BanThreshold) / c.BanWindow.Seconds(),
			Burst: c.BanThreshold, MaxKeys: c.BanTableSize, EvictBusy: true}),
		bans: make(map[netip.Addr]int64),
	}
}

// banned reports whether ip is banned at now.
func (g *flapGuard) banned(ip netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	end, ok := g.bans[ip]
	if !ok {
		return false
	}
	if now.UnixNano() < end {
		return true
	}
	delete(g.bans, ip)
	return false
}

// flap counts one short connection from ip at now and reports whether it
// got ip banned.
func (g *flapGuard) flap(ip netip.Addr, now time.Time) bool {
	if g.flaps.AllowN(ip, now, 1) {
		return false
	}
	// Over the threshold: ban, and start the count again afterwards.
	g.flaps.Forget(ip)
	end := now.Add(g.banFor).UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now.UnixNano())
	if _, ok := g.bans[ip]; !ok && len(g.bans) >= g.maxBans {
		g.dropOldest()
	}
	g.bans[ip] = end
	g.queue = append(g.queue, banEntry{ip, end})
	if len(g.queue)-g.head > 2*g.maxBans {
		g.compact()
	}
	return true
}

// short reports whether a connection opened at opened and closed at now
// counts as a flap.
func (g *flapGuard) short(opened, now time.Time) bool {
	return g.lifetime > 0 && now.Sub(opened) < g.lifetime
}

// expire drops the bans that have ended by now; g.mu held.
func (g *flapGuard) expire(now int64) {
	for g.head < len(g.queue) && g.queue[g.head].end <= now {
		g.dropOldest()
	}
	// Drop the released front of the queue once it is most of it.
	if g.head > 0 && g.head >= len(g.queue)/2 {
		n := copy(g.queue, g.queue[g.head:])
		clear(g.queue[n:])
		g.queue = g.queue[:n]
		g.head = 0
	}
}

// dropOldest removes the ban that ends first; g.mu held. A queue entry
// for an IP banned again since is stale: the map holds the later end.
func (g *flapGuard) dropOldest() {
	for g.head < len(g.queue) {
		b := g.queue[g.head]
		g.queue[g.head] = banEntry{}
		g.head++
		if end, ok := g.bans[b.ip]; ok && end == b.end {
			delete(g.bans, b.ip)
			return
		}
	}
}

// compact drops the queue's stale entries (IPs banned again since, or
// found ended by banned); g.mu held.
func (g *flapGuard) compact() {
	live := g.queue[:0]
	for _, b := range g.queue[g.head:] {
		if end, ok := g.bans[b.ip]; ok && end == b.end {
			live = append(live, b)
		}
	}
	clear(g.queue[len(live):])
	g.queue, g.head = live, 0
}

// len returns the IPs banned now (ended bans are dropped first).
func (g *flapGuard) len(now time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now.UnixNano())
	return len(g.bans)
}

// flapped counts a connection from c's IP that ended short (its handshake
// failed or was abandoned) and bans the IP when it passes the threshold.
func (s *Server) flapped(c *engine.Conn) {
	if s.flaps == nil {
		return
	}
	ip := ipkey.Of(c.RemoteAddr().Addr(), s.cfg.PerIPv6Prefix)
	s.m.flaps.Inc()
	if s.flaps.flap(ip, s.cfg.Clock.Now()) {
		s.m.bans.Inc()
		who := ip.String()
		if ip.Is6() {
			who = netip.PrefixFrom(ip, ipkey.Bits(s.cfg.PerIPv6Prefix)).String()
		}
		s.log.Warn("tls client banned for flapping", "ip", who,
			"threshold", s.cfg.BanThreshold, "window", s.cfg.BanWindow, "for", s.cfg.BanDuration)
	}
}

// closedAfterHandshake counts an established connection that closed within
// Config.BanLifetime of opening as a flap, unless the server ended it
// (shutdown, the admin, a panic).
func (s *Server) closedAfterHandshake(c *engine.Conn, r engine.CloseReason) {
	if s == nil || s.flaps == nil { // a client connection (Client), or bans off
		return
	}
	switch r {
	case engine.ReasonShutdown, engine.ReasonAdmin, engine.ReasonPanic:
		return
	}
	if s.flaps.short(c.Created(), s.cfg.Clock.Now()) {
		s.flapped(c)
	}
}

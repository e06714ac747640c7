package mqtt

import "sync/atomic"

// DropReason says why a message was not delivered to a subscriber, or not
// retained. The same values label metrics.
type DropReason uint8

const (
	// DropQueueFull is a QoS 1 or 2 message for a session whose queue is
	// at Config.MaxQueuedMessages or MaxQueuedBytes.
	DropQueueFull DropReason = iota
	// DropTotalQueueFull is a message that would take the bytes queued
	// across sessions past Config.MaxQueuedBytesTotal.
	DropTotalQueueFull
	// DropOffline is a QoS 0 message for a subscriber that is offline.
	DropOffline
	// DropExpired is a message whose Message Expiry Interval passed while
	// it was queued.
	DropExpired
	// DropTooLarge is a message larger than the subscriber's Maximum
	// Packet Size.
	DropTooLarge
	// DropNotAuthorized is a PUBLISH the Authorize hook refused.
	DropNotAuthorized
	// DropRetainedFull is a retained message not kept because of
	// Config.MaxRetained or MaxRetainedBytes.
	DropRetainedFull
	// DropWriteFailed is a message the subscriber's connection refused
	// (closed or over its output bound).
	DropWriteFailed
	// DropSessionEnded is a queued message discarded with its session
	// (expired, or replaced by a clean start).
	DropSessionEnded
	// DropRefused is a PUBLISH the OnPublish hook refused with a reason
	// code (a gateway's per-device rate limit, say).
	DropRefused
	// DropRetainedClientFull is a retained message not kept because its
	// publisher's retained messages would pass
	// Config.MaxRetainedBytesPerClient.
	DropRetainedClientFull
	numDropReasons
)

var dropNames = [...]string{"queue_full", "total_queue_full", "offline", "expired", "too_large",
	"not_authorized", "retained_full", "write_failed", "session_ended", "refused",
	"retained_client_full"}

// String returns the snake_case name used in metrics and logs.
func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every DropReason, for metric labels.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// Stats are a server's counters and gauges.
type Stats struct {
	// Connections by protocol version: accepted CONNECTs still open.
	ConnectionsV311, ConnectionsV5 int64
	// Pending connections have not sent an accepted CONNECT yet.
	Pending int64
	// ConnectsRefused counts CONNECTs answered with a failure code.
	ConnectsRefused uint64
	// PacketsIn and PacketsOut count packets by control packet type
	// (index: Type).
	PacketsIn, PacketsOut [16]uint64
	// PublishesIn counts PUBLISH packets received by QoS; PublishesOut
	// those sent.
	PublishesIn, PublishesOut [3]uint64
	// Dropped counts messages not delivered (or not retained), by reason
	// (index: DropReason).
	Dropped [numDropReasons]uint64
	// QueuedMessages and QueuedBytes are held across sessions, waiting for
	// their clients (inflight messages included).
	QueuedMessages, QueuedBytes int64
	// Retained is the number of retained messages, RetainedBytes their
	// bytes (as Config.MaxRetainedBytes counts them), RetainedClients the
	// clients holding at least one (Config.MaxRetainedBytesPerClient).
	Retained, RetainedBytes, RetainedClients int64
	// SessionsOnline and SessionsOffline count sessions.
	SessionsOnline, SessionsOffline int64
	// Subscriptions counts subscriptions across sessions.
	Subscriptions int64
	// Takeovers counts sessions taken over by a new connection.
	Takeovers uint64
	// KeepAliveTimeouts counts clients closed for keep-alive.
	KeepAliveTimeouts uint64
	// WillsPublished counts will messages published.
	WillsPublished uint64
	// Wills and WillBytes are the pending will messages the sessions hold
	// and their bytes (Config.MaxWillBytes); WillsRefused counts CONNECTs
	// refused because their will would pass it.
	Wills, WillBytes int64
	WillsRefused     uint64
	// ProtocolErrors counts connections closed for a malformed packet or a
	// protocol violation.
	ProtocolErrors uint64
	// RateLimited counts clients disconnected for PublishRate or
	// PublishBytesRate.
	RateLimited uint64
}

type serverStats struct {
	connV3, connV5, pending                     atomic.Int64
	refused, takeovers, keepAlive, wills, proto atomic.Uint64
	rateLimited                                 atomic.Uint64
	pkts                                        [16]packetCounters // by loop: loops don't share cache lines
	dropped                                     [numDropReasons]atomic.Uint64
	online, offline, subscriptions              atomic.Int64
	retained, retainedBytes, retainedClients    atomic.Int64
	willsHeld, willBytes                        atomic.Int64
	willsRefused                                atomic.Uint64
}

// packetCounters are the per-packet counters of the connections of one
// event loop (of loops whose index is the same modulo 16).
type packetCounters struct {
	in, out       [16]atomic.Uint64
	pubIn, pubOut [3]atomic.Uint64
	_             [64]byte
}

// pc returns the packet counters of c's loop.
func (c *conn) pc() *packetCounters { return &c.srv.stats.pkts[c.ec.Loop()&15] }

func (s *Server) drop(r DropReason) { s.stats.dropped[r].Add(1) }

// queuedShard is one shard of the queued gauges, on cache lines of its
// own (rwShard's).
type queuedShard struct {
	bytes, msgs atomic.Int64
	_           [128 - 16]byte
}

// queuedBytes returns the bytes queued across sessions.
func (s *Server) queuedBytes() int64 {
	var n int64
	for i := range s.queued {
		n += s.queued[i].bytes.Load()
	}
	return n
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		ConnectionsV311: st.connV3.Load(), ConnectionsV5: st.connV5.Load(), Pending: st.pending.Load(),
		ConnectsRefused: st.refused.Load(),
		QueuedBytes:     s.queuedBytes(),
		Retained:        st.retained.Load(), RetainedBytes: st.retainedBytes.Load(),
		RetainedClients: st.retainedClients.Load(),
		SessionsOnline:  st.online.Load(), SessionsOffline: st.offline.Load(),
		Subscriptions: st.subscriptions.Load(),
		Takeovers:     st.takeovers.Load(), KeepAliveTimeouts: st.keepAlive.Load(),
		Wills: st.willsHeld.Load(), WillBytes: st.willBytes.Load(), WillsRefused: st.willsRefused.Load(),
		WillsPublished: st.wills.Load(), ProtocolErrors: st.proto.Load(), RateLimited: st.rateLimited.Load(),
	}
	for k := range st.pkts {
		pc := &st.pkts[k]
		for i := range pc.in {
			out.PacketsIn[i] += pc.in[i].Load()
			out.PacketsOut[i] += pc.out[i].Load()
		}
		for i := range pc.pubIn {
			out.PublishesIn[i] += pc.pubIn[i].Load()
			out.PublishesOut[i] += pc.pubOut[i].Load()
		}
	}
	for i := range s.queued {
		out.QueuedMessages += s.queued[i].msgs.Load()
	}
	for i := range st.dropped {
		out.Dropped[i] = st.dropped[i].Load()
	}
	return out
}

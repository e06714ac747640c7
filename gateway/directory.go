package gateway

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"
)

// dirEntry is what a node knows of a device online somewhere in the
// cluster. Every node holds one per device of the whole cluster (prefork
// workers too, each a node), so it is kept small and free of pointers of
// its own: node and protocol names are interned handles, the remote
// address is a value, and the session is its node's sequence number (the
// session id node/seq is built when asked for).
type dirEntry struct {
	node   unique.Handle[string]
	proto  unique.Handle[string]
	since  int64  // connected at, Unix ns
	seq    uint64 // the session's number on its node
	remote netip.AddrPort
}

// dirShard is one shard of the cluster directory, by device id.
type dirShard struct {
	mu sync.RWMutex
	m  map[string]dirEntry
	_  [40]byte
}

// newer reports whether e is a later session than o: connected later, or
// at the same instant on a node whose name sorts later, or later on the
// same node. Every node decides alike.
func (e *dirEntry) newer(o *dirEntry) bool {
	if e.since != o.since {
		return e.since > o.since
	}
	if e.node != o.node {
		return e.node.Value() > o.node.Value()
	}
	return e.seq > o.seq
}

// same reports whether e and o are the same session.
func (e *dirEntry) same(o *dirEntry) bool { return e.node == o.node && e.seq == o.seq }

// info returns the DeviceInfo of device's entry e.
func (e *dirEntry) info(device string) *DeviceInfo {
	d := &DeviceInfo{Device: device, State: "online", Node: e.node.Value(), Protocol: e.proto.Value(),
		ConnectedAt: time.Unix(0, e.since), session: sessionID(e.node.Value(), e.seq)}
	if e.remote.IsValid() {
		d.Remote = e.remote.String()
	}
	return d
}

// sessionID is the cluster-unique id of a node's seq-th session.
func sessionID(node string, seq uint64) string { return node + "/" + strconv.FormatUint(seq, 10) }

// parseSession splits a session id into its node and sequence number.
func parseSession(id string) (node string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	return id[:i], seq, err == nil
}

// entryOf returns the directory entry a presence message describes; ok is
// false when its session id does not belong to its node.
func entryOf(p *presenceMsg) (dirEntry, bool) {
	node, seq, ok := parseSession(p.Session)
	if !ok || node != p.Node {
		return dirEntry{}, false
	}
	remote, _ := netip.ParseAddrPort(p.Remote)
	return dirEntry{node: unique.Make(p.Node), proto: unique.Make(p.Protocol), since: p.ConnectedAt.UnixNano(),
		seq: seq, remote: remote}, true
}

// entryOfSession returns the directory entry of a local session.
func (h *Hub) entryOfSession(s *Session) dirEntry {
	return dirEntry{node: h.node, proto: unique.Make(s.t.Protocol()), since: s.since, seq: s.seq,
		remote: s.t.Remote()}
}

// dirSet records e as device's entry unless the directory holds a newer
// session of the device.
func (h *Hub) dirSet(device string, e dirEntry) {
	ds := &h.dir[h.shardOf(device)]
	ds.mu.Lock()
	if old, ok := ds.m[device]; !ok || !old.newer(&e) {
		ds.m[device] = e
	}
	ds.mu.Unlock()
}

// dirDelete removes device's entry if it is still session e.
func (h *Hub) dirDelete(device string, e *dirEntry) {
	ds := &h.dir[h.shardOf(device)]
	ds.mu.Lock()
	if old, ok := ds.m[device]; ok && old.same(e) {
		delete(ds.m, device)
	}
	ds.mu.Unlock()
}

// dirGet returns device's entry.
func (h *Hub) dirGet(device string) (dirEntry, bool) {
	ds := &h.dir[h.shardOf(device)]
	ds.mu.RLock()
	e, ok := ds.m[device]
	ds.mu.RUnlock()
	return e, ok
}

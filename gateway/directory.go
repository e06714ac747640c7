package gateway

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"
	"unsafe"

	"github.com/warrenhq/warren/internal/inline"
	"github.com/warrenhq/warren/internal/keytab"
)

// dirEntry is what a node knows of a device online somewhere in the
// cluster. Every node holds one per device of the whole cluster (prefork
// workers too, each a node), so it is kept to 40 bytes with no pointer
// but the node's interned name: the protocol is an index into a small
// table, the remote address 16 bytes and a port, and the session its
// node's sequence number (the session id node/seq is built when asked
// for; kept modulo 2^32 here, which only a node's four-billionth session
// of the same device at the same nanosecond could confuse).
type dirEntry struct {
	node  unique.Handle[string]
	since int64    // connected at, Unix ns
	addr  [16]byte // remote address, IPv4 in IPv6 form
	seq   uint32   // the session's number on its node, modulo 2^32
	port  uint16   // remote port
	proto uint8    // index in protocols
	flags uint8    // dirAddrValid, dirAddr4
}

// dirEntry flags.
const (
	dirAddrValid = 1 << iota // addr and port hold the remote address
	dirAddr4                 // the remote address is IPv4
)

// protocols interns the protocol names of directory entries; entry 0 is
// the empty name, and names past the table's 255 entries are kept as "".
var protocols = struct {
	sync.RWMutex
	names []string
	index map[string]uint8
}{names: []string{""}, index: map[string]uint8{"": 0}}

// protocolIndex returns name's index in protocols, adding it if new.
func protocolIndex(name string) uint8 {
	protocols.RLock()
	i, ok := protocols.index[name]
	protocols.RUnlock()
	if ok {
		return i
	}
	protocols.Lock()
	defer protocols.Unlock()
	if i, ok := protocols.index[name]; ok {
		return i
	}
	if len(protocols.names) > 255 {
		return 0
	}
	i = uint8(len(protocols.names))
	protocols.names = append(protocols.names, name)
	protocols.index[name] = i
	return i
}

// protocolName returns the name of protocol index i.
func protocolName(i uint8) string {
	protocols.RLock()
	defer protocols.RUnlock()
	if int(i) < len(protocols.names) {
		return protocols.names[i]
	}
	return ""
}

// setRemote stores ap as e's remote address.
func (e *dirEntry) setRemote(ap netip.AddrPort) {
	if !ap.IsValid() {
		return
	}
	a := ap.Addr()
	e.addr, e.port, e.flags = a.As16(), ap.Port(), dirAddrValid
	if a.Is4() {
		e.flags |= dirAddr4
	}
}

// remote returns e's remote address (zone dropped).
func (e *dirEntry) remote() netip.AddrPort {
	if e.flags&dirAddrValid == 0 {
		return netip.AddrPort{}
	}
	a := netip.AddrFrom16(e.addr)
	if e.flags&dirAddr4 != 0 {
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, e.port)
}

// dirShard is one shard of the cluster directory, by device id: a keytab
// of records (one pointer slot each, the key being the id the record
// holds) where a map[string]dirEntry cost a 56-byte slot, its share of
// empty slots and the id's own allocation (≈ 100 bytes a device).
type dirShard struct {
	mu sync.RWMutex
	t  keytab.Table[*dirRec]
	_  [40]byte
}

// dirRec is the directory's record of a device: its dirEntry packed, then
// in the same allocation the remote address in as many bytes as its family
// needs (none, 4 or 16) and the device id, so that an IPv4 device with an
// id of up to 17 bytes takes one 48-byte object. The record is a size
// class's struct of a dirRec and a byte array (newDirRec); a record whose
// address and id do not fit the largest class (dirLong, an id longer than
// any the gateway admits) has a string of them after the dirRec instead.
// A record's id never changes; its entry does, under its shard's lock.
type dirRec struct {
	node  unique.Handle[string]
	since int64
	seq   uint32
	port  uint16
	proto uint8
	flags uint8   // dirAddrValid, dirAddr4, dirLong
	n     uint8   // the id's length (inline records)
	tail  [7]byte // the address's and the id's first bytes; the rest follow in the object
}

// dirLong marks a record whose address and id are in a string after it.
const dirLong = 1 << 7

// dirRecSize is the size of a dirRec; what follows it in its object is at
// this offset.
const dirRecSize = unsafe.Sizeof(dirRec{})

// dirMaxInline is the most bytes of address and id a record holds inline.
const dirMaxInline = 7 + inline.MaxBytes

// addrLen is the bytes of the remote address a record with flags keeps.
func addrLen(flags uint8) int {
	switch {
	case flags&dirAddrValid == 0:
		return 0
	case flags&dirAddr4 != 0:
		return 4
	}
	return 16
}

// newDirRec returns a record of device's entry e.
func newDirRec(device string, e *dirEntry) *dirRec {
	al := addrLen(e.flags)
	n := al + len(device)
	if n > dirMaxInline {
		b := make([]byte, n)
		copy(b, e.addr[16-al:])
		copy(b[al:], device)
		r := inline.WithString[dirRec](string(b))
		r.flags = dirLong
		r.set(e)
		return r
	}
	r, _, _ := inline.New[dirRec](max(0, n-len(dirRec{}.tail))) // the record's own tail holds the first bytes
	r.n = uint8(len(device))
	copy(unsafe.Slice(&r.tail[0], n)[al:], device)
	r.set(e)
	return r
}

// bytes returns the record's address and id bytes.
func (r *dirRec) bytes() []byte {
	if r.flags&dirLong != 0 {
		s := *(*string)(unsafe.Add(unsafe.Pointer(r), dirRecSize))
		return unsafe.Slice(unsafe.StringData(s), len(s))
	}
	return unsafe.Slice(&r.tail[0], addrLen(r.flags)+int(r.n))
}

// TableKey returns the device id.
func (r *dirRec) TableKey() string {
	b := r.bytes()
	b = b[addrLen(r.flags):]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// fits reports whether r can hold e: its address takes as many bytes.
func (r *dirRec) fits(e *dirEntry) bool { return addrLen(r.flags) == addrLen(e.flags) }

// set stores e in r, which fits it; the id stays. A long record's
// address is in its string, which set does not write: a long record is
// only set by newDirRec (store replaces one).
func (r *dirRec) set(e *dirEntry) {
	r.node, r.since, r.seq, r.port, r.proto = e.node, e.since, e.seq, e.port, e.proto
	r.flags = r.flags&dirLong | e.flags
	if al := addrLen(e.flags); al > 0 && r.flags&dirLong == 0 {
		copy(unsafe.Slice(&r.tail[0], al), e.addr[16-al:])
	}
}

// entry returns r's entry.
func (r *dirRec) entry() dirEntry {
	e := dirEntry{node: r.node, since: r.since, seq: r.seq, port: r.port, proto: r.proto, flags: r.flags &^ dirLong}
	if al := addrLen(r.flags); al > 0 {
		copy(e.addr[16-al:], r.bytes()[:al])
		if al == 4 {
			e.addr[10], e.addr[11] = 0xff, 0xff
		}
	}
	return e
}

// get returns device's entry in the shard; its lock is held.
func (ds *dirShard) get(device string) (dirEntry, bool) {
	if r := ds.t.Get(device); r != nil {
		return r.entry(), true
	}
	return dirEntry{}, false
}

// store makes e device's entry in the shard; its lock is held.
func (ds *dirShard) store(device string, e *dirEntry) {
	r := ds.t.Get(device)
	switch {
	case r == nil:
		ds.t.Put(newDirRec(device, e))
	case r.fits(e) && r.flags&dirLong == 0:
		r.set(e)
	default:
		ds.t.Replace(r, newDirRec(r.TableKey(), e))
	}
}

// remove deletes device's entry from the shard; its lock is held.
func (ds *dirShard) remove(device string) {
	if r := ds.t.Get(device); r != nil {
		ds.t.Remove(r)
	}
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
	since := time.Unix(0, e.since)
	// LastSeen is the connect time, the last the directory heard of the
	// device; the node holding it puts its last activity in its place.
	d := &DeviceInfo{Device: device, State: "online", Node: e.node.Value(), Protocol: protocolName(e.proto),
		ConnectedAt: since, LastSeen: since, session: sessionID(e.node.Value(), uint64(e.seq))}
	if r := e.remote(); r.IsValid() {
		d.Remote = r.String()
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
	e := dirEntry{node: unique.Make(p.Node), proto: protocolIndex(p.Protocol), since: p.ConnectedAt.UnixNano(),
		seq: uint32(seq)}
	if remote, err := netip.ParseAddrPort(p.Remote); err == nil {
		e.setRemote(remote)
	}
	return e, true
}

// entryOfSession returns the directory entry of a local session.
func (h *Hub) entryOfSession(s *Session) dirEntry {
	e := dirEntry{node: h.node, proto: protocolIndex(s.t.Protocol()), since: s.since, seq: s.seq}
	e.setRemote(s.t.Remote())
	return e
}

// dirSet records e as device's entry unless the directory holds a newer
// session of the device.
func (h *Hub) dirSet(device string, e dirEntry) {
	ds := &h.dir[h.shardOf(device)]
	ds.mu.Lock()
	if old, ok := ds.get(device); !ok || !old.newer(&e) {
		ds.store(device, &e)
	}
	ds.mu.Unlock()
}

// dirPut is dirSet that also returns the session that lost, when the
// device had another: the entry it held if e is newer, else e.
func (h *Hub) dirPut(device string, e dirEntry) (lost dirEntry, ok bool) {
	ds := &h.dir[h.shardOf(device)]
	ds.mu.Lock()
	defer ds.mu.Unlock()
	old, had := ds.get(device)
	switch {
	case !had:
		ds.store(device, &e)
		return dirEntry{}, false
	case old.same(&e):
		ds.store(device, &e)
		return dirEntry{}, false
	case old.newer(&e):
		return e, true
	default:
		ds.store(device, &e)
		return old, true
	}
}

// dirDelete removes device's entry if it is still session e.
func (h *Hub) dirDelete(device string, e *dirEntry) {
	ds := &h.dir[h.shardOf(device)]
	ds.mu.Lock()
	if old, ok := ds.get(device); ok && old.same(e) {
		ds.remove(device)
	}
	ds.mu.Unlock()
}

// dirGet returns device's entry.
func (h *Hub) dirGet(device string) (dirEntry, bool) {
	ds := &h.dir[h.shardOf(device)]
	ds.mu.RLock()
	e, ok := ds.get(device)
	ds.mu.RUnlock()
	return e, ok
}

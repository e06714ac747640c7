//go:build linux || darwin || freebsd

package engine

import (
	"sync"
	"sync/atomic"
)

// The descriptor table maps a descriptor to the connection registered on
// it. There is one for the process, shared by every loop of every engine:
// descriptors are unique in a process, so one slot per descriptor serves
// them all, where a table per loop cost each connection 8 bytes in every
// loop's table (a loop's events carry descriptors up to the highest the
// process has open), 256 bytes a connection with 32 loops.
//
// A slot is written by the loop that registers the connection and by the
// same loop when it closes it (before the descriptor is closed, so before
// its number can be reused), and read by any loop: an event a loop polled
// before a close may name a descriptor since reused by another loop, so a
// reader checks the connection's host (owned). Slots live in chunks that
// never move once made; growing copies only the list of chunks.
const (
	fdChunkBits = 12
	fdChunkMask = 1<<fdChunkBits - 1
)

type fdChunk [1 << fdChunkBits]atomic.Pointer[Conn]

var fdTable struct {
	mu     sync.Mutex // serialises growth
	chunks atomic.Pointer[[]*fdChunk]
}

// fdConn returns the connection registered on fd, on whichever loop, or nil.
func fdConn(fd int) *Conn {
	if p := fdTable.chunks.Load(); p != nil {
		if i := fd >> fdChunkBits; i < len(*p) {
			if ch := (*p)[i]; ch != nil {
				return ch[fd&fdChunkMask].Load()
			}
		}
	}
	return nil
}

// owned returns the connection registered on fd if l owns it, else nil.
func (l *loop) owned(fd int) *Conn {
	if c := fdConn(fd); c != nil && c.host == connHost(l) {
		return c
	}
	return nil
}

// fdSlot returns fd's slot, making its chunk when needed.
func fdSlot(fd int) *atomic.Pointer[Conn] {
	i := fd >> fdChunkBits
	if p := fdTable.chunks.Load(); p != nil && i < len(*p) && (*p)[i] != nil {
		return &(*p)[i][fd&fdChunkMask]
	}
	fdTable.mu.Lock()
	defer fdTable.mu.Unlock()
	var cur []*fdChunk
	if p := fdTable.chunks.Load(); p != nil {
		cur = *p
	}
	if i >= len(cur) || cur[i] == nil {
		next := make([]*fdChunk, max(len(cur), i+1))
		copy(next, cur)
		next[i] = new(fdChunk)
		fdTable.chunks.Store(&next)
		cur = next
	}
	return &cur[i][fd&fdChunkMask]
}

// findConn returns e's registered connection with the given ID, or nil.
// It walks the whole table; it may run on any goroutine.
func (e *Engine) findConn(id uint64) *Conn {
	p := fdTable.chunks.Load()
	if p == nil {
		return nil
	}
	for _, ch := range *p {
		if ch == nil {
			continue
		}
		for i := range ch {
			if c := ch[i].Load(); c != nil && c.id == id && c.host.engine() == e {
				return c
			}
		}
	}
	return nil
}

// eachConn calls fn for every connection l owns. fn may close it. Every
// loop walks the whole table, other loops' and engines' slots included:
// the walks (drain, close-all, retime, restamp, snapshot) are rare.
func (l *loop) eachConn(fn func(c *Conn)) {
	p := fdTable.chunks.Load()
	if p == nil {
		return
	}
	for _, ch := range *p {
		if ch == nil {
			continue
		}
		for i := range ch {
			if c := ch[i].Load(); c != nil && c.host == connHost(l) {
				fn(c)
			}
		}
	}
}

// eachConnWhile calls fn for connections l owns, as eachConn does, until
// fn returns false; the rest of the table is not scanned. (eachConn keeps
// its own loop: restamp runs it on every connection without a call more.)
func (l *loop) eachConnWhile(fn func(c *Conn) bool) {
	p := fdTable.chunks.Load()
	if p == nil {
		return
	}
	for _, ch := range *p {
		if ch == nil {
			continue
		}
		for i := range ch {
			if c := ch[i].Load(); c != nil && c.host == connHost(l) && !fn(c) {
				return
			}
		}
	}
}

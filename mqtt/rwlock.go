package mqtt

import (
	"runtime"
	"sync"
	"unsafe"
)

// rwLock is Server.mu: a reader-writer lock with one read side per event
// loop. Routing a message takes a read lock for every message, and one
// RWMutex would have every loop's read locks (two atomic adds each) write
// the same cache line, moving it between cores at every message; readers
// here take the shard of their loop (rlock), a cache line of its own.
// Writers (CONNECT, SUBSCRIBE, a session's end: rare next to messages)
// take every shard, in index order, and release them in reverse.
type rwLock struct {
	shards []rwShard // a power of two
}

// rwShard is one read side, alone on its cache lines (two lines: the
// adjacent-line prefetcher of x86 cores moves them in pairs).
type rwShard struct {
	sync.RWMutex
	_ [128 - unsafe.Sizeof(sync.RWMutex{})]byte
}

// maxLockShards bounds the shards of rwLock; loops share shards past it.
const maxLockShards = 16

// init sizes the lock for the event loops the process runs by default
// (GOMAXPROCS).
func (l *rwLock) init() {
	n := 1
	for n < runtime.GOMAXPROCS(0) && n < maxLockShards {
		n *= 2
	}
	l.shards = make([]rwShard, n)
}

// Lock takes every shard for writing.
func (l *rwLock) Lock() {
	for i := range l.shards {
		l.shards[i].Lock()
	}
}

// Unlock releases what Lock took.
func (l *rwLock) Unlock() {
	for i := len(l.shards) - 1; i >= 0; i-- {
		l.shards[i].Unlock()
	}
}

// RLock takes the first shard for reading, for readers off the loops'
// hot paths; RUnlock releases it.
func (l *rwLock) RLock() { l.shards[0].RLock() }

// RUnlock releases what RLock took.
func (l *rwLock) RUnlock() { l.shards[0].RUnlock() }

// rlock takes the read side of loop i's shard and returns it, to be
// released with RUnlock.
func (l *rwLock) rlock(i int) *sync.RWMutex {
	sh := &l.shards[i&(len(l.shards)-1)].RWMutex
	sh.RLock()
	return sh
}

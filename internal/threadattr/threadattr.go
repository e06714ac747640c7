// Package threadattr holds the lock that code changing an OS thread's
// scheduling attributes with a read and then a write takes around the
// pair: internal/schedslice's sweep (sched_getattr, then sched_setattr
// with the nice value it read) and tlsx's handshake workers lowering
// themselves (getpriority, then setpriority). Without it, a sweep could
// write back the nice value a worker had just lowered.
package threadattr

import "sync"

// Mu is held around every read-then-write of a thread's scheduling
// attributes in this module.
var Mu sync.Mutex

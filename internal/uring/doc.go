// Package uring is a small raw io_uring wrapper (Linux): a ring set up
// with io_uring_setup and mapped with mmap, submission entries filled in
// place, io_uring_enter to submit and wait, completions read in place,
// an opcode probe and a provided-buffer ring. It has no dependency beyond
// golang.org/x/sys/unix and nothing of it builds elsewhere.
//
// A Ring belongs to one goroutine. Memory an entry points at (a buffer to
// send, a msghdr, epoll events to fill) must stay referenced by Go values
// until that entry's completion has been read: the kernel reads or writes
// it in between, and the garbage collector knows nothing of addresses
// stored in an entry. Go's heap does not move objects, so a live
// reference is enough; stack memory must never be used.
package uring

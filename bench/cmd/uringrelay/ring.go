//go:build linux

package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring ABI this experiment uses (include/uapi/linux/io_uring.h).
const (
	opPollAdd = 6
	opAccept  = 13
	opSend    = 26
	opRecv    = 27

	sqeBufferSelect = 1 << 5 // IOSQE_BUFFER_SELECT

	setupCQSize        = 1 << 3
	setupSubmitAll     = 1 << 7
	setupCoopTaskrun   = 1 << 8
	setupSingleIssuer  = 1 << 12
	setupDeferTaskrun  = 1 << 13
	featSingleMmap     = 1 << 0
	featMinTimeout     = 1 << 15
	enterGetEvents     = 1 << 0
	enterExtArg        = 1 << 3
	recvMultishot      = 1 << 1 // sqe.ioprio of IORING_OP_RECV
	acceptMultishot    = 1 << 0 // sqe.ioprio of IORING_OP_ACCEPT
	cqeFBuffer         = 1 << 0
	cqeFMore           = 1 << 1
	cqeBufferShift     = 16
	registerPbufRing   = 22
	offSQRing          = 0
	offSQEs            = 0x10000000
	sqeSize            = 64
	cqeSize            = 16
	ringBufEntrySize   = 16
	ringBufTailOffset  = 12 // the u32 holding entry 0's bid and the ring's tail
	defaultSQEntries   = 256
	defaultCQEntries   = 4096
	defaultBufCount    = 1024
	defaultBufSize     = 4096
	ringBufGroup       = 0
	maxEnterRetryCount = 1000
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	resv2                                                           uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	resv2                                                           uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	pad         uint16
	resv        [3]uint64
}

// geteventsArg is struct io_uring_getevents_arg (IORING_ENTER_EXT_ARG).
type geteventsArg struct {
	sigmask     uint64
	sigmaskSize uint32
	minWaitUsec uint32 // Linux 6.12 (IORING_FEAT_MIN_TIMEOUT)
	ts          uint64
}

// sqe is a submission queue entry as the kernel reads it (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufGroup    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is a completion queue entry (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// ring is one io_uring owned by one goroutine locked to its OS thread
// (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN: completions'
// task work runs only inside that thread's io_uring_enter).
type ring struct {
	fd       int
	rings    []byte
	sqeMem   []byte
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqSize   uint32
	sqes     unsafe.Pointer
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     unsafe.Pointer
	tail     uint32 // SQEs prepared (local tail)
	enters   uint64 // io_uring_enter calls
	bufs     *bufRing
	released bool
	minWait  bool // the kernel takes min_wait_usec
}

func newRing(sqEntries, cqEntries uint32) (*ring, error) {
	p := uringParams{
		flags:     setupCQSize | setupSubmitAll | setupCoopTaskrun | setupSingleIssuer | setupDeferTaskrun,
		cqEntries: cqEntries,
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(sqEntries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd), minWait: p.features&featMinTimeout != 0}
	if p.features&featSingleMmap == 0 {
		unix.Close(r.fd)
		return nil, errors.New("io_uring: kernel lacks IORING_FEAT_SINGLE_MMAP")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*cqeSize)
	var err error
	r.rings, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(r.fd)
		return nil, fmt.Errorf("io_uring: mmap rings: %w", err)
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(r.rings)
		unix.Close(r.fd)
		return nil, fmt.Errorf("io_uring: mmap sqes: %w", err)
	}
	base := unsafe.Pointer(&r.rings[0])
	r.sqHead = (*uint32)(unsafe.Add(base, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqSize = p.sqEntries
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Add(base, p.cqOff.cqes)
	r.sqes = unsafe.Pointer(&r.sqeMem[0])
	// The SQ array maps ring slots to SQEs one to one, once.
	array := unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.tail = atomic.LoadUint32(r.sqTail)
	return r, nil
}

// getSQE returns a zeroed SQE to fill, submitting what is queued first
// when the submission queue is full.
func (r *ring) getSQE() (*sqe, error) {
	if r.tail-atomic.LoadUint32(r.sqHead) >= r.sqSize {
		if err := r.enter(0, 0); err != nil {
			return nil, err
		}
	}
	s := (*sqe)(unsafe.Add(r.sqes, uintptr(r.tail&r.sqMask)*sqeSize))
	*s = sqe{}
	r.tail++
	return s, nil
}

// enter submits every prepared SQE and, when wait > 0, waits until at
// least wait completions are ready — one io_uring_enter. With minWaitUsec
// (and a kernel that takes it) it waits that long at most for wait
// completions, and after that returns with whatever is ready, once at
// least one is.
func (r *ring) enter(wait, minWaitUsec uint32) error {
	atomic.StoreUint32(r.sqTail, r.tail)
	var flags, argp, argsz uintptr
	if wait > 0 {
		flags = enterGetEvents
	}
	arg := geteventsArg{minWaitUsec: minWaitUsec}
	if minWaitUsec > 0 && r.minWait && wait > 1 {
		flags |= enterExtArg
		argp, argsz = uintptr(unsafe.Pointer(&arg)), unsafe.Sizeof(arg)
	}
	for range maxEnterRetryCount {
		toSubmit := r.tail - atomic.LoadUint32(r.sqHead)
		r.enters++
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), flags, argp, argsz)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.EBUSY:
			// The completion queue is full: the caller must reap first.
			return nil
		default:
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
	return errors.New("io_uring_enter: interrupted too often")
}

// forEachCQE hands every ready completion to fn and marks them seen.
func (r *ring) forEachCQE(fn func(c *cqe)) int {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail; head++ {
		c := *(*cqe)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize))
		atomic.StoreUint32(r.cqHead, head+1)
		fn(&c)
		n++
		if head+1 == tail {
			tail = atomic.LoadUint32(r.cqTail)
		}
	}
	return n
}

func (r *ring) close() {
	if r.released {
		return
	}
	r.released = true
	unix.Close(r.fd)
	unix.Munmap(r.sqeMem)
	unix.Munmap(r.rings)
	if r.bufs != nil {
		unix.Munmap(r.bufs.entries)
		unix.Munmap(r.bufs.mem)
	}
}

// bufRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING): the
// kernel picks a free buffer for each multishot recv completion; the
// relay hands it back once the bytes are sent on.
type bufRing struct {
	entries []byte // count × 16-byte struct io_uring_buf
	mem     []byte // count × size bytes of buffers
	count   uint16
	size    uint32
	tail    uint16
}

func (r *ring) registerBufRing(count uint16, size uint32) error {
	b := &bufRing{count: count, size: size}
	var err error
	b.entries, err = unix.Mmap(-1, 0, int(count)*ringBufEntrySize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring: mmap buffer ring: %w", err)
	}
	b.mem, err = unix.Mmap(-1, 0, int(count)*int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(b.entries)
		return fmt.Errorf("io_uring: mmap buffers: %w", err)
	}
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&b.entries[0]))), ringEntries: uint32(count), bgid: ringBufGroup}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	if errno != 0 {
		unix.Munmap(b.entries)
		unix.Munmap(b.mem)
		return fmt.Errorf("io_uring_register(PBUF_RING): %w", errno)
	}
	r.bufs = b
	for i := range count {
		b.add(i)
	}
	b.publish()
	return nil
}

// buf returns buffer bid's first n bytes.
func (b *bufRing) buf(bid uint16, n int) []byte {
	off := int(bid) * int(b.size)
	return b.mem[off : off+n : off+int(b.size)]
}

// add queues buffer bid for the kernel; publish makes the queued ones visible.
func (b *bufRing) add(bid uint16) {
	e := unsafe.Pointer(&b.entries[int(b.tail&(b.count-1))*ringBufEntrySize])
	*(*uint64)(e) = uint64(uintptr(unsafe.Pointer(&b.mem[int(bid)*int(b.size)])))
	*(*uint32)(unsafe.Add(e, 8)) = b.size
	*(*uint16)(unsafe.Add(e, 12)) = bid
	b.tail++
}

// publish stores the ring's tail (the u16 at offset 14, which overlays
// entry 0's resv field) with one atomic 32-bit store of entry 0's bid and
// the tail, so the entries written before it are visible first.
func (b *bufRing) publish() {
	p := (*uint32)(unsafe.Pointer(&b.entries[ringBufTailOffset]))
	bid0 := uint32(*(*uint16)(unsafe.Pointer(&b.entries[ringBufTailOffset])))
	atomic.StoreUint32(p, bid0|uint32(b.tail)<<16)
}

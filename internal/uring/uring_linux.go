//go:build linux

package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes (include/uapi/linux/io_uring.h, enum io_uring_op).
const (
	OpPollAdd     = 6
	OpSendmsg     = 9
	OpAccept      = 13
	OpAsyncCancel = 14
	OpSend        = 26
	OpRecv        = 27
	OpEpollWait   = 59 // Linux 6.15
)

// Setup flags (io_uring_params.flags).
const (
	SetupCQSize       = 1 << 3
	SetupSubmitAll    = 1 << 7
	SetupCoopTaskrun  = 1 << 8
	SetupSingleIssuer = 1 << 12
	SetupDeferTaskrun = 1 << 13
)

// Entry and completion flags.
const (
	SQEBufferSelect = 1 << 5 // IOSQE_BUFFER_SELECT
	RecvMultishot   = 1 << 1 // sqe.ioprio of OpRecv
	AcceptMultishot = 1 << 0 // sqe.ioprio of OpAccept
	CancelAny       = 1 << 2 // IORING_ASYNC_CANCEL_ANY, in OpFlags of OpAsyncCancel
	CQEFBuffer      = 1 << 0 // IORING_CQE_F_BUFFER
	CQEFMore        = 1 << 1 // IORING_CQE_F_MORE
	CQEBufferShift  = 16     // a selected buffer's id is Flags >> CQEBufferShift
)

const (
	featSingleMmap    = 1 << 0
	featMinTimeout    = 1 << 15
	enterGetEvents    = 1 << 0
	enterExtArg       = 1 << 3
	registerProbe     = 8
	registerPbufRing  = 22
	probeOpSupported  = 1
	offSQRing         = 0
	offSQEs           = 0x10000000
	sqeSize           = 64
	cqeSize           = 16
	bufEntrySize      = 16
	bufTailOffset     = 12 // the u32 holding entry 0's bid and the ring's tail
	maxEnterRetries   = 1000
	probeOps          = 256
	probeHeaderSize   = 16
	probeOpSize       = 8
	defaultBufGroupID = 0
)

// ErrUnsupported is returned by Probe when the kernel lacks an opcode.
var ErrUnsupported = errors.New("uring: operation not supported by the kernel")

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	resv2                                                           uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	resv2                                                           uint64
}

type params struct {
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
	ts          uint64 // address of a struct __kernel_timespec, 0 for none
}

// SQE is a submission queue entry as the kernel reads it (64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufGroup    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

// SetAddr stores p's address in the entry. The caller keeps what p points
// into referenced until the entry's completion is read.
func (s *SQE) SetAddr(p unsafe.Pointer) { s.Addr = uint64(uintptr(p)) }

// CQE is a completion queue entry (16 bytes).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Ring is one io_uring. It is owned by one goroutine; with
// SetupSingleIssuer that goroutine must stay on the thread that created it
// (runtime.LockOSThread).
type Ring struct {
	fd     int
	rings  []byte
	sqeMem []byte
	sqHead *uint32
	sqTail *uint32
	sqMask uint32
	sqSize uint32
	sqes   unsafe.Pointer
	cqHead *uint32
	cqTail *uint32
	cqMask uint32
	cqes   unsafe.Pointer
	tail   uint32 // entries prepared (the local tail)
	bufs   *BufRing
	closed bool
	// arg and ts are what Enter passes with IORING_ENTER_EXT_ARG: kept in
	// the Ring (on the heap, where nothing moves) because arg holds ts's
	// address as an integer.
	arg geteventsArg
	ts  unix.Timespec

	// Enters counts io_uring_enter calls.
	Enters uint64
	// MinWait reports whether the kernel takes a minimum wait
	// (IORING_FEAT_MIN_TIMEOUT, Linux 6.12).
	MinWait bool
}

// New sets up a ring with sqEntries submission and cqEntries completion
// entries (SetupCQSize is added to flags) and maps it.
func New(sqEntries, cqEntries uint32, flags uint32) (*Ring, error) {
	p := &params{flags: flags | SetupCQSize, cqEntries: cqEntries}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(sqEntries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd), MinWait: p.features&featMinTimeout != 0}
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
	// The SQ array maps ring slots to entries one to one, once.
	array := unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.tail = atomic.LoadUint32(r.sqTail)
	return r, nil
}

// Probe reports nil if the kernel supports every one of ops
// (IORING_REGISTER_PROBE), ErrUnsupported (wrapped) if not.
func (r *Ring) Probe(ops ...uint8) error {
	buf := make([]byte, probeHeaderSize+probeOps*probeOpSize)
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerProbe, uintptr(unsafe.Pointer(&buf[0])), probeOps, 0, 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_register(PROBE): %w", errno)
	}
	n := int(buf[1]) // ops_len
	for _, op := range ops {
		if int(op) >= n {
			return fmt.Errorf("opcode %d: %w", op, ErrUnsupported)
		}
		off := probeHeaderSize + int(op)*probeOpSize
		flags := uint16(buf[off+2]) | uint16(buf[off+3])<<8
		if flags&probeOpSupported == 0 {
			return fmt.Errorf("opcode %d: %w", op, ErrUnsupported)
		}
	}
	return nil
}

// Prepared returns the number of entries prepared and not yet submitted.
func (r *Ring) Prepared() uint32 { return r.tail - atomic.LoadUint32(r.sqHead) }

// GetSQE returns a zeroed entry to fill, submitting what is prepared
// first when the submission queue is full.
func (r *Ring) GetSQE() (*SQE, error) {
	if r.tail-atomic.LoadUint32(r.sqHead) >= r.sqSize {
		if err := r.Enter(0, 0, -1); err != nil {
			return nil, err
		}
		if r.tail-atomic.LoadUint32(r.sqHead) >= r.sqSize {
			return nil, errors.New("io_uring: submission queue full")
		}
	}
	s := (*SQE)(unsafe.Add(r.sqes, uintptr(r.tail&r.sqMask)*sqeSize))
	*s = SQE{}
	r.tail++
	return s, nil
}

// Enter submits every prepared entry and, when wait > 0, waits until at
// least wait completions are ready: one io_uring_enter. timeout bounds
// the wait when it is zero or more (a timeout is not an error); with
// minWaitUsec (and a kernel that takes it, MinWait) it waits that long at
// most for wait completions, and after that returns once at least one is
// ready. A completion queue too full to submit into (EBUSY) is not an
// error either: the caller reaps and enters again.
func (r *Ring) Enter(wait, minWaitUsec uint32, timeout time.Duration) error {
	var flags uintptr
	ext := false
	if wait > 0 {
		flags = enterGetEvents
		r.arg = geteventsArg{}
		if minWaitUsec > 0 && r.MinWait {
			r.arg.minWaitUsec = minWaitUsec
			ext = true
		}
		if timeout >= 0 {
			r.ts = unix.NsecToTimespec(int64(timeout))
			r.arg.ts = uint64(uintptr(unsafe.Pointer(&r.ts)))
			ext = true
		}
		if ext {
			flags |= enterExtArg
		}
	}
	return r.enter(wait, flags, ext)
}

// enter makes the io_uring_enter calls of Enter and Poll: flags and, when
// ext, r.arg are set.
func (r *Ring) enter(wait uint32, flags uintptr, ext bool) error {
	atomic.StoreUint32(r.sqTail, r.tail)
	for range maxEnterRetries {
		toSubmit := r.tail - atomic.LoadUint32(r.sqHead)
		r.Enters++
		var errno syscall.Errno
		switch {
		case ext:
			_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), flags, uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
		default:
			// Also without a wait a plain Syscall6: the submissions may
			// run inline (a send of a large buffer, a cancel), and the
			// scheduler and the garbage collector's stop-the-world must
			// see the thread in the kernel.
			_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), flags, 0, 0)
		}
		switch errno {
		case 0, unix.ETIME:
			return nil
		case unix.EINTR:
			if wait > 0 && r.Ready() > 0 {
				return nil
			}
			continue
		case unix.EAGAIN, unix.EBUSY:
			return nil
		default:
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
	return errors.New("io_uring_enter: interrupted too often")
}

// Poll submits every prepared entry and, without waiting, makes ready
// the completions whose work the kernel has finished: one
// io_uring_enter with IORING_ENTER_GETEVENTS and no minimum. On a ring
// set up with SetupDeferTaskrun, completions are posted only by the
// issuer's enters that ask for events; Enter(0, 0, -1) submits without
// ever posting them, so a loop that never waits (its wait's timeout
// always zero) must Poll.
func (r *Ring) Poll() error {
	return r.enter(0, enterGetEvents, false)
}

// Ready returns the number of completions ready to be read.
func (r *Ring) Ready() uint32 { return atomic.LoadUint32(r.cqTail) - *r.cqHead }

// ForEachCQE hands every ready completion to fn, marking each seen before
// fn runs (fn may prepare and submit entries), and returns how many.
func (r *Ring) ForEachCQE(fn func(c CQE)) int {
	n := 0
	for {
		head := *r.cqHead
		if head == atomic.LoadUint32(r.cqTail) {
			return n
		}
		c := *(*CQE)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize))
		atomic.StoreUint32(r.cqHead, head+1)
		fn(c)
		n++
	}
}

// Close releases the ring and its buffer ring, if any. The kernel cancels
// what is still in flight; memory those entries point at must stay
// referenced until their completions are read, so Close only a ring with
// nothing in flight (or keep that memory for good).
func (r *Ring) Close() {
	if r.closed {
		return
	}
	r.closed = true
	unix.Close(r.fd)
	unix.Munmap(r.sqeMem)
	unix.Munmap(r.rings)
	if r.bufs != nil {
		unix.Munmap(r.bufs.entries)
		unix.Munmap(r.bufs.mem)
	}
}

// BufRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING) in buffer
// group 0: the kernel picks a free buffer for each receive that selects
// one, and the owner hands it back with Add and Publish.
type BufRing struct {
	entries []byte // count × 16-byte struct io_uring_buf
	mem     []byte // count × size bytes of buffers
	count   uint16
	size    uint32
	tail    uint16
}

// RegisterBufRing registers count buffers (a power of two) of size bytes
// each, all handed to the kernel, and returns the ring. The Ring owns it:
// Close unmaps it.
func (r *Ring) RegisterBufRing(count uint16, size uint32) (*BufRing, error) {
	b := &BufRing{count: count, size: size}
	var err error
	b.entries, err = unix.Mmap(-1, 0, int(count)*bufEntrySize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("io_uring: mmap buffer ring: %w", err)
	}
	b.mem, err = unix.Mmap(-1, 0, int(count)*int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(b.entries)
		return nil, fmt.Errorf("io_uring: mmap buffers: %w", err)
	}
	reg := &bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&b.entries[0]))), ringEntries: uint32(count), bgid: defaultBufGroupID}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(reg)), 1, 0, 0)
	if errno != 0 {
		unix.Munmap(b.entries)
		unix.Munmap(b.mem)
		return nil, fmt.Errorf("io_uring_register(PBUF_RING): %w", errno)
	}
	r.bufs = b
	for i := range count {
		b.Add(i)
	}
	b.Publish()
	return b, nil
}

// Buf returns buffer bid's first n bytes.
func (b *BufRing) Buf(bid uint16, n int) []byte {
	off := int(bid) * int(b.size)
	return b.mem[off : off+n : off+int(b.size)]
}

// Add queues buffer bid for the kernel; Publish makes the queued ones
// visible.
func (b *BufRing) Add(bid uint16) {
	e := unsafe.Pointer(&b.entries[int(b.tail&(b.count-1))*bufEntrySize])
	*(*uint64)(e) = uint64(uintptr(unsafe.Pointer(&b.mem[int(bid)*int(b.size)])))
	*(*uint32)(unsafe.Add(e, 8)) = b.size
	*(*uint16)(unsafe.Add(e, 12)) = bid
	b.tail++
}

// Publish stores the ring's tail (the u16 at offset 14, which overlays
// entry 0's resv field) with one atomic 32-bit store of entry 0's bid and
// the tail, so the entries written before it are visible first.
func (b *BufRing) Publish() {
	p := (*uint32)(unsafe.Pointer(&b.entries[bufTailOffset]))
	bid0 := uint32(*(*uint16)(unsafe.Pointer(&b.entries[bufTailOffset])))
	atomic.StoreUint32(p, bid0|uint32(b.tail)<<16)
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// CommandAsync is Command without the wait: it returns at once and calls
// done exactly once — from another goroutine, or before it returns — with
// what Command would have returned. Nothing waits in between: the local
// device's ack (or its timeout's timer), or the holding node's answer on
// the hub's reply subscription, calls done. ctx ending ends the wait, and
// done gets ctx's error. done must not block: it runs on the goroutine
// that delivered the answer (an event loop, a timer, the NATS reply
// subscription's). A ctx that has ended already sends nothing.
func (h *Hub) CommandAsync(ctx context.Context, device, name string, payload json.RawMessage, timeout time.Duration, done func(Ack, error)) {
	if !ValidCommandName(name) {
		done(Ack{}, ErrBadCommandName)
		return
	}
	timeout = h.clampTimeout(timeout)
	start := time.Now()
	w := &cmdWait{done: func(a Ack, err error) {
		h.m.commandDone(a, err, time.Since(start))
		done(a, err)
	}}
	w.mu.Lock()
	w.stop = context.AfterFunc(ctx, func() { w.finish(Ack{}, ctx.Err()) })
	w.mu.Unlock()
	if ctx.Err() != nil {
		// The caller is gone already (an API request that waited for a
		// worker while its client left): the AfterFunc answers with
		// ctx's error, and the device is sent nothing it would act on
		// for no one.
		return
	}
	h.commandAsync(w, device, name, payload, timeout)
}

// ErrBadCommandName: the command's name is not ValidCommandName.
var ErrBadCommandName = errors.New("gateway: bad command name")

// cmdWait is one command's wait: finish ends it once.
type cmdWait struct {
	fired  atomic.Bool
	mu     sync.Mutex
	stop   func() bool // the context's AfterFunc
	cancel func()      // drops the wait for a remote answer, once sent
	done   func(Ack, error)
}

func (w *cmdWait) finish(a Ack, err error) {
	if !w.fired.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	stop, cancel := w.stop, w.cancel
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
	if cancel != nil {
		cancel()
	}
	w.done(a, err)
}

func (h *Hub) commandAsync(w *cmdWait, device, name string, payload json.RawMessage, timeout time.Duration) {
	if s := h.Local(device); s != nil {
		err := h.deliver(s, name, payload, timeout, func(a Ack) {
			if a.Status == "timeout" {
				w.finish(a, ErrCommandTimeout)
				return
			}
			w.finish(a, nil)
		})
		if err != nil {
			w.finish(Ack{}, err)
		}
		return
	}
	req, _ := json.Marshal(nodeCommand{Device: device, Name: name, Payload: payload, Timeout: timeout.String()})
	viaDir := h.remoteDir()
	var subj string
	if viaDir {
		// The machine's directory forwards the command to the node
		// holding the device, which answers here directly: one NATS
		// round trip less than a lookup and then the command.
		subj = dirSubject(h.cfg.Directory, "command")
	} else {
		d := h.dirLookup(device)
		if d == nil || d.Node == h.cfg.Node {
			w.finish(Ack{}, ErrOffline)
			return
		}
		subj = nodeCommandSubject(d.Node)
	}
	rq, err := h.replies()
	if err != nil {
		w.finish(Ack{}, err)
		return
	}
	cancel, err := rq.request(subj, req, timeout+time.Second, func(m *nats.Msg, err error) {
		w.finish(h.nodeAnswer(m, err, viaDir))
	})
	if err != nil {
		if viaDir {
			h.m.dirRequest("command", "error")
		}
		w.finish(Ack{}, err)
		return
	}
	w.mu.Lock()
	if w.fired.Load() {
		w.mu.Unlock()
		cancel() // finished meanwhile (the context ended)
		return
	}
	w.cancel = cancel
	w.mu.Unlock()
}

// nodeAnswer reads the holding node's answer to a forwarded command, or
// the request's failure.
func (h *Hub) nodeAnswer(m *nats.Msg, err error, viaDir bool) (Ack, error) {
	if viaDir {
		result := "ok"
		switch {
		case err == nil:
		case errors.Is(err, nats.ErrNoResponders):
			result = "error"
			err = fmt.Errorf("%w: command: %v", ErrDirectory, err)
		case errors.Is(err, nats.ErrTimeout):
			result, err = "timeout", ErrCommandTimeout
		default:
			result = "error"
		}
		h.m.dirRequest("command", result)
		if err != nil {
			return Ack{}, err
		}
	} else if err != nil {
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return Ack{}, ErrOffline
		case errors.Is(err, nats.ErrTimeout):
			return Ack{}, ErrCommandTimeout
		}
		return Ack{}, err
	}
	var r nodeReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Ack{}, err
	}
	switch r.Error {
	case "":
		if r.Ack.Status == "timeout" {
			return r.Ack, ErrCommandTimeout
		}
		return r.Ack, nil
	case "offline":
		return Ack{}, ErrOffline
	case "draining":
		return Ack{}, ErrDraining
	default:
		return Ack{}, errors.New(r.Error)
	}
}

// replies returns the hub's reply subscription, made on first use (a
// failure is retried on the next use).
func (h *Hub) replies() (*requester, error) {
	if r := h.rq.Load(); r != nil {
		return r, nil
	}
	h.rqMu.Lock()
	defer h.rqMu.Unlock()
	if r := h.rq.Load(); r != nil {
		return r, nil
	}
	if h.rqClosed {
		return nil, nats.ErrConnectionClosed
	}
	r, err := newRequester(h.nc, h.cfg.MaxPending)
	if err != nil {
		return nil, err
	}
	h.rq.Store(r)
	return r, nil
}

// closeReplies ends the reply subscription: commands still waiting for
// another node fail.
func (h *Hub) closeReplies() {
	h.rqMu.Lock()
	h.rqClosed = true
	r := h.rq.Load()
	h.rqMu.Unlock()
	if r != nil {
		r.close()
	}
}

// forwardedPending is how many commands wait for another node's answer.
func (h *Hub) forwardedPending() int {
	if r := h.rq.Load(); r != nil {
		return r.waiting()
	}
	return 0
}

// requester sends NATS requests whose answers arrive on one subscription
// (a wildcard inbox) and calls each request's callback: a request waits
// as a map entry and a runtime timer, not as a goroutine. nats.go's own
// Request waits on the caller's goroutine.
type requester struct {
	nc     *nats.Conn
	prefix string // "_INBOX.<nuid>."
	sub    *nats.Subscription
	max    int

	mu      sync.Mutex
	next    uint64
	pending map[string]*natsWait
	closed  bool
}

type natsWait struct {
	timer *time.Timer
	done  func(*nats.Msg, error)
}

func newRequester(nc *nats.Conn, max int) (*requester, error) {
	r := &requester{nc: nc, prefix: nats.NewInbox() + ".", max: max, pending: make(map[string]*natsWait)}
	sub, err := nc.Subscribe(r.prefix+"*", r.onReply)
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(1<<20, 256<<20)
	r.sub = sub
	return r, nil
}

// request publishes data to subj and calls done once with the first
// answer, nats.ErrNoResponders, nats.ErrTimeout after timeout, or the
// publish's error (then request returns it, and done is not called).
// cancel drops the wait without calling done. Past max requests waiting
// it fails with ErrTooManyPending.
func (r *requester) request(subj string, data []byte, timeout time.Duration, done func(*nats.Msg, error)) (cancel func(), err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nats.ErrConnectionClosed
	}
	if len(r.pending) >= r.max {
		r.mu.Unlock()
		return nil, ErrTooManyPending
	}
	r.next++
	token := strconv.FormatUint(r.next, 36)
	w := &natsWait{done: done}
	r.pending[token] = w
	w.timer = time.AfterFunc(timeout, func() { r.complete(token, nil, nats.ErrTimeout) })
	r.mu.Unlock()
	if err := r.nc.PublishRequest(subj, r.prefix+token, data); err != nil {
		r.drop(token)
		return nil, err
	}
	return func() { r.drop(token) }, nil
}

func (r *requester) onReply(m *nats.Msg) {
	token := m.Subject[len(r.prefix):]
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		r.complete(token, nil, nats.ErrNoResponders)
		return
	}
	r.complete(token, m, nil)
}

func (r *requester) take(token string) *natsWait {
	r.mu.Lock()
	w := r.pending[token]
	delete(r.pending, token)
	r.mu.Unlock()
	if w != nil {
		w.timer.Stop()
	}
	return w
}

func (r *requester) complete(token string, m *nats.Msg, err error) {
	if w := r.take(token); w != nil {
		w.done(m, err)
	}
}

func (r *requester) drop(token string) { r.take(token) }

// waiting is how many requests wait for an answer.
func (r *requester) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// close ends the subscription and fails every request still waiting.
func (r *requester) close() {
	r.mu.Lock()
	r.closed = true
	ws := r.pending
	r.pending = make(map[string]*natsWait)
	r.mu.Unlock()
	r.sub.Unsubscribe()
	for _, w := range ws {
		w.timer.Stop()
		w.done(nil, nats.ErrConnectionClosed)
	}
}

package upstream

import (
	"errors"
	"fmt"
)

// Failure says why a request through a Cluster failed without a response
// from a backend. The same values label metrics and logs, and the reverse
// proxy sends them in its X-Warren-Reason header.
type Failure uint8

const (
	// FailNone is no failure.
	FailNone Failure = iota
	// FailNoHost is a cluster with no host that may be picked (every host
	// drained, or the others unhealthy or ejected with panic mode off or
	// not reached).
	FailNoHost
	// FailOverflow is a request refused by a resource threshold
	// (Thresholds.MaxRequests, MaxPending, MaxConnections) or a host's
	// pending queue bound: fail fast rather than wait without bound.
	FailOverflow
	// FailBreakerOpen is a request refused by the cluster's Breaker.
	FailBreakerOpen
	// FailPendingTimeout is a request that waited PoolConfig.PendingTimeout
	// for a connection without getting one.
	FailPendingTimeout
	// FailConnect is a connection that could not be made (refused,
	// unreachable, or PoolConfig.ConnectTimeout passed).
	FailConnect
	// FailReset is a connection that closed or reset before the response
	// was complete.
	FailReset
	// FailTimeout is a response that did not come within the per-try or
	// overall timeout.
	FailTimeout
	// FailBadResponse is a response that broke HTTP/1.1 framing or syntax.
	FailBadResponse
	// FailCanceled is a request the caller canceled.
	FailCanceled
	// FailShutdown is a cluster or engine that is shutting down.
	FailShutdown
	numFailures
)

var failureNames = [...]string{"none", "no_healthy_upstream", "overflow", "breaker_open", "pending_timeout",
	"connect_failure", "upstream_reset", "upstream_timeout", "bad_response", "canceled", "shutdown"}

// String returns the snake_case name used in metrics, logs and the
// X-Warren-Reason header.
func (f Failure) String() string {
	if int(f) < len(failureNames) {
		return failureNames[f]
	}
	return "unknown"
}

// Status returns the status a gateway answers a client with for f: 503
// for refusals (no host, overflow, breaker, pending timeout, shutdown),
// 502 for a backend that failed (connect, reset, bad response), 504 for a
// timeout, 499 for a cancel.
func (f Failure) Status() int {
	switch f {
	case FailConnect, FailReset, FailBadResponse:
		return 502
	case FailTimeout:
		return 504
	case FailCanceled:
		return 499
	}
	return 503
}

// Failures lists every Failure but FailNone, for metric labels.
func Failures() []Failure {
	fs := make([]Failure, 0, numFailures-1)
	for f := FailNoHost; f < numFailures; f++ {
		fs = append(fs, f)
	}
	return fs
}

// Error is a request through a Cluster that ended without a (complete)
// response. Test its kind with errors.Is against the Err… sentinels, or
// read Failure.
type Error struct {
	// Failure says why.
	Failure Failure
	// Reason is the policy that refused the request, for FailOverflow and
	// FailBreakerOpen; ReasonNone otherwise.
	Reason Reason
	// Host is the backend concerned, or "".
	Host string
	// Err is the underlying error (a connect error, a parse error), or nil.
	Err error
}

// Error renders e as "upstream: <failure> [(<reason>)] [host]: <cause>".
func (e *Error) Error() string {
	s := "upstream: " + e.Failure.String()
	if e.Reason != ReasonNone {
		s += " (" + e.Reason.String() + ")"
	}
	if e.Host != "" {
		s += " " + e.Host
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel of e's Failure.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Err == nil && t.Host == "" && t.Reason == ReasonNone && t.Failure == e.Failure
}

// ErrTransferCoding is the cause (Error.Err) of a FailBadResponse whose
// Transfer-Encoding lists a coding other than chunked ("gzip, chunked"):
// the cluster decodes chunked framing only, and passing the body on would
// hand the caller coded bytes it is not told about (RFC 9112 §6.1).
var ErrTransferCoding = errors.New("response in a transfer coding other than chunked")

// ErrConnectTimeout is the cause (Error.Err) of a FailConnect whose
// connect, TLS handshake included, took longer than
// PoolConfig.ConnectTimeout (the proxy answers 502 connect_failure, as for
// any connect failure).
var ErrConnectTimeout = errors.New("connect timed out")

// Sentinels for errors.Is, one per Failure.
var (
	ErrNoHost         = &Error{Failure: FailNoHost}
	ErrOverflow       = &Error{Failure: FailOverflow}
	ErrBreakerOpen    = &Error{Failure: FailBreakerOpen}
	ErrPendingTimeout = &Error{Failure: FailPendingTimeout}
	ErrConnect        = &Error{Failure: FailConnect}
	ErrReset          = &Error{Failure: FailReset}
	ErrTimeout        = &Error{Failure: FailTimeout}
	ErrBadResponse    = &Error{Failure: FailBadResponse}
	ErrCanceled       = &Error{Failure: FailCanceled}
	ErrShutdown       = &Error{Failure: FailShutdown}
)

// FailureOf returns err's Failure, or FailNone when err is nil or not an
// *Error.
func FailureOf(err error) Failure {
	if err == nil {
		return FailNone
	}
	if e, ok := err.(*Error); ok {
		return e.Failure
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Failure
	}
	return FailNone
}

func failf(f Failure, host string, format string, args ...any) *Error {
	return &Error{Failure: f, Host: host, Err: fmt.Errorf(format, args...)}
}

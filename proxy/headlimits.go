package proxy

import (
	"errors"

	"github.com/warrenhq/warren/http1"
)

// HeadLimit names a head limit a request or response went over. The same
// values label warren_proxy_head_limit_total.
type HeadLimit uint8

const (
	// LimitRequestHeaderBytes is a request head over Limits.MaxHeaderBytes
	// (431).
	LimitRequestHeaderBytes HeadLimit = iota
	// LimitRequestHeaders is a request head with more than
	// Limits.MaxHeaders fields (431).
	LimitRequestHeaders
	// LimitRequestURIBytes is a request-target over Limits.MaxURIBytes
	// (414).
	LimitRequestURIBytes
	// LimitRequestTrailer is a chunked request's trailer section over the
	// request head limits (431).
	LimitRequestTrailer
	// LimitResponseHeaderBytes is a response head over the cluster's
	// MaxResponseHeaderBytes (502 bad_response).
	LimitResponseHeaderBytes
	// LimitResponseHeaders is a response head with more than the
	// cluster's MaxResponseHeaders fields (502 bad_response).
	LimitResponseHeaders
	// LimitResponseTrailer is a chunked response's trailer section over
	// the response head limits (the response, already passed on, is cut
	// short).
	LimitResponseTrailer
	numHeadLimits
)

var headLimitNames = [...]string{"request_header_bytes", "request_headers", "request_uri_bytes", "request_trailer",
	"response_header_bytes", "response_headers", "response_trailer"}

// String returns the limit's snake_case name.
func (l HeadLimit) String() string {
	if int(l) < len(headLimitNames) {
		return headLimitNames[l]
	}
	return "unknown"
}

// requestHeadLimit returns the head limit a request parse error reports.
func requestHeadLimit(err error) (HeadLimit, bool) {
	switch {
	case errors.Is(err, http1.ErrHeaderTooLarge):
		return LimitRequestHeaderBytes, true
	case errors.Is(err, http1.ErrTooManyHeaders):
		return LimitRequestHeaders, true
	case errors.Is(err, http1.ErrURITooLong):
		return LimitRequestURIBytes, true
	case errors.Is(err, http1.ErrTrailerTooLarge):
		return LimitRequestTrailer, true
	}
	return 0, false
}

// responseHeadLimit returns the head limit an exchange's failure reports.
func responseHeadLimit(err error) (HeadLimit, bool) {
	switch {
	case errors.Is(err, http1.ErrHeaderTooLarge):
		return LimitResponseHeaderBytes, true
	case errors.Is(err, http1.ErrTooManyHeaders):
		return LimitResponseHeaders, true
	case errors.Is(err, http1.ErrTrailerTooLarge):
		return LimitResponseTrailer, true
	}
	return 0, false
}

// countHeadLimit counts a limit hit, if err is one.
func (s *stats) countHeadLimit(err error, request bool) {
	var l HeadLimit
	var ok bool
	if request {
		l, ok = requestHeadLimit(err)
	} else {
		l, ok = responseHeadLimit(err)
	}
	if ok {
		s.headLimits[l].Add(1)
	}
}

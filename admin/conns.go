package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/engine"
)

// Conn is one live connection as /debug/conns shows it. Durations are
// seconds; addresses are "ip:port" strings.
type Conn struct {
	ID     uint64 `json:"id"`
	Loop   int    `json:"loop"`
	Remote string `json:"remote"`
	Local  string `json:"local"`
	State  string `json:"state"`
	// Protocol is the connection's handler's name (engine.ProtocolNamer),
	// "tcp" when it gives none; an upgrade changes it ("websocket").
	Protocol string `json:"protocol"`
	// Listener is the 1-based index of the listener that accepted the
	// connection, in the order the engine added them; 0 for a connection
	// the engine dialled.
	Listener int `json:"listener"`
	// Outbound is set on a connection the engine dialled (engine.Dial).
	Outbound bool `json:"outbound"`
	// Label is what the application knows the connection as (the
	// gateway's device id), when its handler says (engine.Labeler).
	Label string `json:"label,omitempty"`
	// Created is when the connection was accepted or dialled (RFC 3339).
	Created time.Time `json:"created"`
	// Age is the time since Created.
	Age float64 `json:"age_seconds"`
	// Idle is the time since the engine last saw the connection read or
	// make write progress, to the resolution of its tick.
	Idle     float64 `json:"idle_seconds"`
	BytesIn  uint64  `json:"bytes_in"`
	BytesOut uint64  `json:"bytes_out"`
	// Served counts requests or messages handled, as the protocol keeps it.
	Served uint64 `json:"served"`
	// ReadBuffer is the unconsumed input held; WriteBuffer the queued output.
	ReadBuffer  int `json:"read_buffer_bytes"`
	WriteBuffer int `json:"write_buffer_bytes"`
}

// ConnList is the answer of GET /debug/conns: Total connections matched the
// filters (past the cursor, if one was given), of which Conns holds those
// from Offset on, at most Limit. NextCursor, when the list is sorted by id
// and more connections matched than it holds, is the cursor of the next
// page (its last id).
//
// Partial is set when some of the engine's loops did not answer the walk
// (busy more than 5 s, or stopped): MissedLoops names them, their
// connections are neither listed nor counted in Total, and the answer is
// still 200 with what the other loops hold.
type ConnList struct {
	Total       int    `json:"total"`
	Offset      int    `json:"offset"`
	Limit       int    `json:"limit"`
	NextCursor  string `json:"next_cursor,omitempty"`
	Partial     bool   `json:"partial,omitempty"`
	MissedLoops []int  `json:"missed_loops,omitempty"`
	Conns       []Conn `json:"conns"`
}

// Bounds of /debug/conns: a page is at most maxLimit connections, and
// offset + limit at most maxWindow, so that a request keeps at most
// maxWindow connections' descriptions however many the engine holds
// (deeper pages go by cursor, sort=id).
const (
	defaultLimit = 100
	maxLimit     = 10000
	maxWindow    = 20000
)

func (s *Server) connOf(ci *engine.ConnInfo, now time.Time) Conn {
	age, idle := ages(ci, now)
	return Conn{
		ID: ci.ID, Loop: ci.Loop, Remote: addrString(ci.Remote), Local: addrString(ci.Local),
		State: ci.State.String(), Protocol: ci.Protocol, Listener: ci.Listener, Outbound: ci.Outbound, Label: ci.Label,
		Created: ci.Created.UTC(), Age: age.Seconds(), Idle: idle.Seconds(),
		BytesIn: ci.BytesIn, BytesOut: ci.BytesOut,
		Served: ci.Served, ReadBuffer: ci.ReadBuffer, WriteBuffer: ci.WriteBuffer,
	}
}

// ages returns how long ago ci was accepted and last moved bytes; unknown
// times count as now.
func ages(ci *engine.ConnInfo, now time.Time) (age, idle time.Duration) {
	if !ci.Created.IsZero() {
		age = max(now.Sub(ci.Created), 0)
	}
	if !ci.LastActive.IsZero() {
		idle = max(now.Sub(ci.LastActive), 0)
	}
	return age, idle
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// connQuery is a parsed /debug/conns query.
type connQuery struct {
	states  []string
	protos  []string
	label   string // exact label, or a prefix ending in *
	remote  func(netip.AddrPort) bool
	minAge  time.Duration
	maxAge  time.Duration // 0: none
	minIdle time.Duration
	sort    string
	offset  int
	limit   int
	cursor  uint64 // ids after it only (sort=id); 0: from the start
}

// sorts order connections for /debug/conns; all but id put the largest
// first, and ties go by id.
var sorts = map[string]func(a, b *engine.ConnInfo) int{
	"id": func(a, b *engine.ConnInfo) int { return cmp.Compare(a.ID, b.ID) },
	// Oldest first: the earliest Created.
	"age": func(a, b *engine.ConnInfo) int { return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) },
	// Longest idle first: the earliest LastActive.
	"idle": func(a, b *engine.ConnInfo) int {
		return cmp.Or(a.LastActive.Compare(b.LastActive), cmp.Compare(a.ID, b.ID))
	},
	"bytes": func(a, b *engine.ConnInfo) int {
		return cmp.Or(cmp.Compare(b.BytesIn+b.BytesOut, a.BytesIn+a.BytesOut), cmp.Compare(a.ID, b.ID))
	},
	"served": func(a, b *engine.ConnInfo) int {
		return cmp.Or(cmp.Compare(b.Served, a.Served), cmp.Compare(a.ID, b.ID))
	},
	"queued": func(a, b *engine.ConnInfo) int {
		return cmp.Or(cmp.Compare(b.WriteBuffer, a.WriteBuffer), cmp.Compare(a.ID, b.ID))
	},
}

func parseConnQuery(q map[string][]string) (connQuery, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	cq := connQuery{sort: "id", limit: defaultLimit}
	var err error
	if v := get("state"); v != "" {
		cq.states, err = names(v, stateNames(), "state")
		if err != nil {
			return cq, err
		}
	}
	if v := get("proto"); v != "" {
		// Protocols name themselves (engine.ProtocolNamer): any name is a
		// valid filter.
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cq.protos = append(cq.protos, p)
			}
		}
	}
	cq.label = get("label")
	// device= and prefix= name a device (the gateway's label) as label=
	// does: exactly, or by the start of its id.
	if v := get("device"); v != "" {
		cq.label = v
	}
	if v := get("prefix"); v != "" {
		cq.label = v + "*"
	}
	if v := get("remote"); v != "" {
		if cq.remote, err = remoteFilter(v); err != nil {
			return cq, err
		}
	}
	for _, d := range []struct {
		key string
		to  *time.Duration
	}{{"min_age", &cq.minAge}, {"max_age", &cq.maxAge}, {"min_idle", &cq.minIdle}} {
		if v := get(d.key); v != "" {
			if *d.to, err = parseDuration(v); err != nil {
				return cq, fmt.Errorf("%s: %w", d.key, err)
			}
		}
	}
	if v := get("sort"); v != "" {
		if sorts[v] == nil {
			return cq, fmt.Errorf("sort: %q is not one of id, age, idle, bytes, served, queued", v)
		}
		cq.sort = v
	}
	for _, n := range []struct {
		key      string
		to       *int
		min, max int
	}{{"offset", &cq.offset, 0, 1 << 30}, {"limit", &cq.limit, 1, maxLimit}} {
		if v := get(n.key); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i < n.min {
				return cq, fmt.Errorf("%s: %q is not a whole number ≥ %d", n.key, v, n.min)
			}
			*n.to = min(i, n.max)
		}
	}
	if cq.offset+cq.limit > maxWindow {
		return cq, fmt.Errorf("offset: offset + limit may be at most %d; page further with cursor (sort=id)", maxWindow)
	}
	if v := get("cursor"); v != "" {
		if cq.sort != "id" {
			return cq, fmt.Errorf("cursor: only with sort=id")
		}
		if cq.cursor, err = strconv.ParseUint(v, 10, 64); err != nil {
			return cq, fmt.Errorf("cursor: %q is not a connection id", v)
		}
	}
	return cq, nil
}

func stateNames() []string {
	var out []string
	for _, st := range engine.States() {
		out = append(out, st.String())
	}
	return out
}

// names splits a comma-separated list and checks each name is known.
func names(v string, known []string, what string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(v, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("%s: %q is not one of %s", what, n, strings.Join(known, ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

// remoteFilter accepts an IP, an IP:port or a CIDR prefix.
func remoteFilter(v string) (func(netip.AddrPort) bool, error) {
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return func(a netip.AddrPort) bool {
			return a.Port() == ap.Port() && a.Addr().Unmap() == ap.Addr().Unmap()
		}, nil
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); err == nil {
		ip = ip.Unmap()
		return func(a netip.AddrPort) bool { return a.Addr().Unmap() == ip }, nil
	}
	if p, err := netip.ParsePrefix(v); err == nil {
		p = p.Masked()
		return func(a netip.AddrPort) bool { return p.Contains(a.Addr().Unmap()) }, nil
	}
	return nil, fmt.Errorf("remote: %q is not an IP, IP:port or CIDR prefix", v)
}

// parseDuration accepts a Go duration ("1m30s") or a number of seconds.
func parseDuration(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0, fmt.Errorf("%q is not a duration (10s, 1m) or seconds", v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func (q *connQuery) match(ci *engine.ConnInfo, now time.Time) bool {
	if len(q.states) > 0 && !slices.Contains(q.states, ci.State.String()) {
		return false
	}
	if q.label != "" {
		if p, ok := strings.CutSuffix(q.label, "*"); ok {
			if !strings.HasPrefix(ci.Label, p) {
				return false
			}
		} else if ci.Label != q.label {
			return false
		}
	}
	if len(q.protos) > 0 && !slices.Contains(q.protos, ci.Protocol) {
		return false
	}
	if q.remote != nil && !q.remote(ci.Remote) {
		return false
	}
	age, idle := ages(ci, now)
	if age < q.minAge || (q.maxAge > 0 && age > q.maxAge) {
		return false
	}
	return idle >= q.minIdle
}

// connWalker is a Source that walks its connections without a snapshot
// of them all (engine.Engine.EachConnInfo), and says which loops it left
// out (*engine.WalkError).
type connWalker interface {
	EachConnInfo(fn func(ci *engine.ConnInfo)) error
}

// connFinder is a Source that describes one connection by id without
// describing the others (engine.Engine.ConnInfoByID).
type connFinder interface {
	ConnInfoByID(id uint64) (engine.ConnInfo, bool, error)
}

var (
	_ connWalker = (*engine.Engine)(nil)
	_ connFinder = (*engine.Engine)(nil)
)

// The warning of a partial /debug/conns is limited to a burst of
// partialWarnBurst, then one each partialWarnEvery, each saying how many
// were left out since the one before ("suppressed").
const (
	partialWarnBurst = 3
	partialWarnEvery = time.Minute
)

// warnPartial logs that a /debug/conns walk at now left loops out (err),
// within the limit above.
func (s *Server) warnPartial(now time.Time, err error) {
	s.partialMu.Lock()
	if !s.partialLim.AllowN(now, 1) {
		s.partialSkipped++
		s.partialMu.Unlock()
		return
	}
	skipped := s.partialSkipped
	s.partialSkipped = 0
	s.partialMu.Unlock()
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "admin: /debug/conns is partial",
		slog.Any("error", err), slog.Int("suppressed", skipped))
}

// listConns applies q to the source's live connections. It counts the
// matches and keeps only the first offset + limit of them in sort order
// (a bounded heap, at most maxWindow), walking the connections where the
// source can (connWalker) rather than copying them all, and converts only
// the page it returns.
func (s *Server) listConns(q connQuery) ConnList {
	now := s.clock.Now()
	top := boundedTop{cmp: sorts[q.sort], n: q.offset + q.limit}
	total := 0
	visit := func(ci *engine.ConnInfo) {
		if (q.cursor != 0 && ci.ID <= q.cursor) || !q.match(ci, now) {
			return
		}
		total++
		top.offer(ci)
	}
	var missed []int
	if w, ok := s.src.(connWalker); ok {
		if err := w.EachConnInfo(visit); err != nil {
			var we *engine.WalkError
			if errors.As(err, &we) {
				missed = we.Loops
			}
			s.warnPartial(now, err)
			if missed == nil {
				missed = []int{}
			}
		}
	} else {
		infos := s.src.Conns()
		for i := range infos {
			visit(&infos[i])
		}
	}
	matched := top.sorted()
	out := ConnList{Total: total, Offset: q.offset, Limit: q.limit, Conns: []Conn{},
		Partial: missed != nil, MissedLoops: missed}
	if q.offset < len(matched) {
		page := matched[q.offset:]
		out.Conns = make([]Conn, len(page))
		for i := range page {
			out.Conns[i] = s.connOf(&page[i], now)
		}
		if q.sort == "id" && q.offset+len(page) < total {
			out.NextCursor = strconv.FormatUint(page[len(page)-1].ID, 10)
		}
	}
	return out
}

// boundedTop keeps the first n connections offered, in cmp's order: a
// max-heap of at most n copies, its root the last of them.
type boundedTop struct {
	cmp func(a, b *engine.ConnInfo) int
	n   int
	h   []engine.ConnInfo
}

// offer keeps a copy of ci if it is among the first n so far.
func (t *boundedTop) offer(ci *engine.ConnInfo) {
	switch {
	case t.n <= 0:
	case len(t.h) < t.n:
		t.h = append(t.h, *ci)
		for i := len(t.h) - 1; i > 0; { // up
			p := (i - 1) / 2
			if t.cmp(&t.h[p], &t.h[i]) >= 0 {
				break
			}
			t.h[p], t.h[i] = t.h[i], t.h[p]
			i = p
		}
	case t.cmp(ci, &t.h[0]) < 0:
		t.h[0] = *ci
		for i := 0; ; { // down
			l, big := 2*i+1, i
			if l < len(t.h) && t.cmp(&t.h[l], &t.h[big]) > 0 {
				big = l
			}
			if r := l + 1; r < len(t.h) && t.cmp(&t.h[r], &t.h[big]) > 0 {
				big = r
			}
			if big == i {
				break
			}
			t.h[i], t.h[big] = t.h[big], t.h[i]
			i = big
		}
	}
}

// sorted returns what t kept, in cmp's order.
func (t *boundedTop) sorted() []engine.ConnInfo {
	slices.SortFunc(t.h, func(a, b engine.ConnInfo) int { return t.cmp(&a, &b) })
	return t.h
}

func (s *Server) serveConns(w http.ResponseWriter, r *http.Request) {
	q, err := parseConnQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "admin: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, s.listConns(q))
}

// findConn describes the live connection id: found by the source without
// describing the others where it can (connFinder), else from a snapshot.
// A source that could not look on the connection's loop gives an error
// wrapping engine.ErrWalkIncomplete.
func (s *Server) findConn(r *http.Request) (Conn, uint64, bool, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return Conn{}, 0, false, fmt.Errorf("admin: connection id %q is not a number", r.PathValue("id"))
	}
	if f, ok := s.src.(connFinder); ok {
		ci, found, err := f.ConnInfoByID(id)
		if err != nil || !found {
			return Conn{}, id, false, err
		}
		return s.connOf(&ci, s.clock.Now()), id, true, nil
	}
	infos := s.src.Conns()
	for i := range infos {
		if infos[i].ID == id {
			return s.connOf(&infos[i], s.clock.Now()), id, true, nil
		}
	}
	return Conn{}, id, false, nil
}

func (s *Server) serveConn(w http.ResponseWriter, r *http.Request) {
	c, id, ok, err := s.findConn(r)
	switch {
	case errors.Is(err, engine.ErrWalkIncomplete):
		writeError(w, http.StatusServiceUnavailable, "admin: connection %d: %v", id, err)
	case err != nil:
		writeError(w, http.StatusBadRequest, "%v", err)
	case !ok:
		writeError(w, http.StatusNotFound, "admin: no live connection %d", id)
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// serveClose closes a connection with engine.ReasonAdmin. The close is
// asynchronous: queued output is flushed first, bounded by the write
// timeout.
func (s *Server) serveClose(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "admin: connection id %q is not a number", r.PathValue("id"))
		return
	}
	if !s.src.CloseConn(id, engine.ReasonAdmin) {
		writeError(w, http.StatusNotFound, "admin: no live connection %d", id)
		return
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "admin: closed connection",
		slog.Uint64("conn", id), slog.String("by", r.RemoteAddr))
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "closed": true, "reason": engine.ReasonAdmin.String()})
}

// writeJSON encodes v before writing anything, so an encoding error is a
// clean 500 rather than a truncated 200.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": "admin: encode: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

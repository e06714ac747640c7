package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrDirectory: the machine's Directory did not answer a lookup in time
// (HubConfig.DirectoryTimeout) or could not be reached.
var ErrDirectory = errors.New("gateway: directory unavailable")

// maxDirPage bounds the devices of one list answer of a Directory, so that
// an answer stays well under NATS's default 1 MB payload; a longer page is
// asked for in several requests.
const maxDirPage = 2000

// dirSubject is the subject of a Directory's op (get, list, broadcast).
func dirSubject(machine, op string) string { return "warren.dir." + machine + "." + op }

// dirListReq asks a Directory for a page of its devices.
type dirListReq struct {
	Prefix string `json:"prefix,omitempty"`
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit"`
}

// dirListReply is a page of a Directory's devices.
type dirListReply struct {
	Devices []presenceMsg `json:"devices"`
	Next    string        `json:"next,omitempty"`
}

// dirBroadcastReq asks a Directory to fan a broadcast out to the nodes.
type dirBroadcastReq struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Devices []string        `json:"devices,omitempty"`
	Prefix  string          `json:"prefix,omitempty"`
}

// presenceOfInfo is d as a presence message (the directory's wire form).
func presenceOfInfo(d *DeviceInfo) presenceMsg {
	return presenceMsg{Device: d.Device, State: d.State, Node: d.Node, Protocol: d.Protocol, Remote: d.Remote,
		ConnectedAt: d.ConnectedAt, Session: d.session}
}

// infoOfPresence is the DeviceInfo a directory's presence message carries.
func infoOfPresence(p *presenceMsg) DeviceInfo {
	return DeviceInfo{Device: p.Device, State: "online", Node: p.Node, Protocol: p.Protocol, Remote: p.Remote,
		ConnectedAt: p.ConnectedAt, LastSeen: p.ConnectedAt, session: p.Session}
}

// remoteDir reports whether the hub asks a remote Directory rather than
// holding the cluster's directory itself.
func (h *Hub) remoteDir() bool { return h.cfg.Directory != "" }

// localInfo returns the DeviceInfo of a local session, last seen included.
func (h *Hub) localInfo(s *Session) *DeviceInfo {
	d := h.infoOf(s)
	d.LastSeen = s.lastSeen()
	return d
}

// dirRequest sends one request to the hub's Directory and counts it by op
// and result (ok, timeout, error).
func (h *Hub) dirRequest(op string, data []byte) (*nats.Msg, error) {
	m, err := h.nc.Request(dirSubject(h.cfg.Directory, op), data, h.cfg.DirectoryTimeout)
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrTimeout):
		result = "timeout"
	default:
		result = "error"
	}
	h.m.dirRequest(op, result)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDirectory, op, err)
	}
	return m, nil
}

// remoteLookup is Lookup for a hub with a remote Directory: a local device
// is answered here, any other asks the directory (one NATS round trip).
func (h *Hub) remoteLookup(device string) (*DeviceInfo, error) {
	if s := h.Local(device); s != nil {
		return h.localInfo(s), nil
	}
	m, err := h.dirRequest("get", []byte(device))
	if err != nil {
		return nil, err
	}
	var p presenceMsg
	if err := json.Unmarshal(m.Data, &p); err != nil {
		return nil, fmt.Errorf("%w: get: %v", ErrDirectory, err)
	}
	if p.Device == "" {
		return nil, nil
	}
	d := infoOfPresence(&p)
	return &d, nil
}

// remoteList is List for a hub with a remote Directory: the directory's
// pages (as many requests as the page needs), merged with this node's own
// sessions, which the directory may not have heard of yet.
func (h *Hub) remoteList(prefix, cursor string, limit int) ([]DeviceInfo, string, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []DeviceInfo
	cur, more := cursor, false
	for len(out) < limit {
		b, _ := json.Marshal(dirListReq{Prefix: prefix, Cursor: cur, Limit: min(limit-len(out), maxDirPage)})
		m, err := h.dirRequest("list", b)
		if err != nil {
			return nil, "", err
		}
		var r dirListReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return nil, "", fmt.Errorf("%w: list: %v", ErrDirectory, err)
		}
		for i := range r.Devices {
			out = append(out, infoOfPresence(&r.Devices[i]))
		}
		more = r.Next != ""
		if !more {
			break
		}
		cur = r.Next
	}
	// This node's sessions replace the directory's view of them (they
	// carry last_seen) and join the page where the directory has not
	// heard of them yet.
	last := ""
	if len(out) > 0 {
		last = out[len(out)-1].Device
	}
	idx := make(map[string]int, len(out))
	for i := range out {
		idx[out[i].Device] = i
	}
	h.Sessions(func(s *Session) {
		id := s.Device
		if id <= cursor || !strings.HasPrefix(id, prefix) || (more && id > last) {
			return
		}
		if i, ok := idx[id]; ok {
			out[i] = *h.localInfo(s)
			return
		}
		out = append(out, *h.localInfo(s))
	})
	slices.SortFunc(out, func(a, b DeviceInfo) int { return strings.Compare(a.Device, b.Device) })
	next := ""
	switch {
	case len(out) > limit:
		out = out[:limit]
		next = out[limit-1].Device
	case more:
		next = out[len(out)-1].Device
	}
	return out, next, nil
}

// remoteBroadcast is Broadcast for a hub with a remote Directory: the
// directory resolves the devices and fans the command out to their nodes
// (this one included), in requests of at most 1,000 devices.
func (h *Hub) remoteBroadcast(name string, payload json.RawMessage, devices []string, prefix string) BroadcastResult {
	var total BroadcastResult
	send := func(req dirBroadcastReq, n int) {
		b, _ := json.Marshal(req)
		m, err := h.dirRequest("broadcast", b)
		var r BroadcastResult
		if err == nil && json.Unmarshal(m.Data, &r) == nil {
			total.Sent += r.Sent
			total.Offline += r.Offline
			total.Failed += r.Failed
			return
		}
		h.log.Warn("gateway: broadcast through the directory failed", "devices", n, "error", err)
		total.Failed += n
	}
	if prefix != "" || len(devices) == 0 {
		send(dirBroadcastReq{Name: name, Payload: payload, Prefix: prefix}, 0)
		return total
	}
	for len(devices) > 0 {
		n := min(len(devices), 1000)
		send(dirBroadcastReq{Name: name, Payload: payload, Devices: devices[:n]}, n)
		devices = devices[n:]
	}
	return total
}

// remoteCount asks the Directory how many devices it knows (for the
// devices_known metric); ok is false when it does not answer.
func (h *Hub) remoteCount() (int, bool) {
	m, err := h.dirRequest("count", nil)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(m.Data))
	return n, err == nil
}

// onDirCount answers a worker's count request.
func (h *Hub) onDirCount(m *nats.Msg) {
	if m.Reply != "" {
		h.nc.Publish(m.Reply, strconv.AppendInt(nil, int64(h.dirLen()), 10))
	}
}

// onDirGet answers a worker's lookup: the device's entry, or {} when it
// is not online.
func (h *Hub) onDirGet(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	var b []byte
	if d := h.dirLookup(string(m.Data)); d != nil {
		b, _ = json.Marshal(presenceOfInfo(d))
	} else {
		b = []byte("{}")
	}
	h.nc.Publish(m.Reply, b)
}

// onDirCommand forwards a worker's command (a nodeCommand) to the node
// holding the device, with the worker's reply subject, so that the node
// answers the worker directly; it answers offline itself when no node
// holds the device. A node that died since its last heartbeat (the
// directory forgets it after NodeTimeout) never answers: the worker's
// request then ends in its timeout (504), not 404.
func (h *Hub) onDirCommand(m *nats.Msg) {
	var c struct {
		Device string `json:"device"`
	}
	if m.Reply == "" || json.Unmarshal(m.Data, &c) != nil {
		return
	}
	e, ok := h.dirGet(c.Device)
	if !ok || e.node == h.node {
		b, _ := json.Marshal(nodeReply{Error: "offline"})
		h.nc.Publish(m.Reply, b)
		return
	}
	h.nc.PublishMsg(&nats.Msg{Subject: nodeCommandSubject(e.node.Value()), Reply: m.Reply, Data: m.Data})
}

// onDirList answers a worker's list request with at most maxDirPage
// devices.
func (h *Hub) onDirList(m *nats.Msg) {
	var req dirListReq
	if m.Reply == "" || json.Unmarshal(m.Data, &req) != nil {
		return
	}
	if req.Limit <= 0 || req.Limit > maxDirPage {
		req.Limit = maxDirPage
	}
	devs, next := h.dirList(req.Prefix, req.Cursor, req.Limit)
	r := dirListReply{Devices: make([]presenceMsg, len(devs)), Next: next}
	for i := range devs {
		r.Devices[i] = presenceOfInfo(&devs[i])
	}
	b, _ := json.Marshal(r)
	h.nc.Publish(m.Reply, b)
}

// onDirBroadcast fans a worker's broadcast out to the nodes holding the
// devices and answers with the counts.
func (h *Hub) onDirBroadcast(m *nats.Msg) {
	var req dirBroadcastReq
	if m.Reply == "" || json.Unmarshal(m.Data, &req) != nil {
		return
	}
	r := h.dirBroadcast(req.Name, req.Payload, req.Devices, req.Prefix)
	b, _ := json.Marshal(r)
	h.nc.Publish(m.Reply, b)
}

// DirectoryConfig configures a Directory.
type DirectoryConfig struct {
	// Machine names the directory: its hubs (HubConfig.Directory) ask it
	// on warren.dir.<Machine>.{get,list,broadcast,count,command}, and it takes part in
	// the cluster as a node of that name that holds no device. It must be
	// unique in the cluster, like a node name. Required.
	Machine string
	// NodeTimeout is how long a silent node keeps its devices in the
	// directory. Zero means 3 s.
	NodeTimeout time.Duration
	// CommandTimeout is how long a command sent through the directory's
	// API (ServeAPI) waits for the device's ack when the request names no
	// timeout. Zero means 5 s.
	CommandTimeout time.Duration
	// MaxCommandTimeout caps the timeout a command through the API may
	// ask for. Zero means 60 s.
	MaxCommandTimeout time.Duration
	// Logger receives the directory's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Directory is one machine's copy of the cluster directory, for the
// prefork workers of `warren serve -procs`: it follows presence and
// heartbeats like a node and answers the workers' lookups, list pages and
// broadcasts over NATS, so that a machine holds the directory once, not
// once per worker. A worker's hub (HubConfig.Directory) keeps only its own
// sessions and does not follow presence: the Directory tells it on
// warren.node.<node>.replaced when a device it holds connected again
// elsewhere. See docs/gateway.md, "Directory".
type Directory struct {
	h *Hub
}

// StartDirectory starts a Directory on bus: it subscribes, takes a
// snapshot of the cluster's presence, and serves requests until Close.
func StartDirectory(bus *Bus, cfg DirectoryConfig) (*Directory, error) {
	if cfg.Machine == "" {
		return nil, errors.New("gateway: a directory needs a machine name")
	}
	h := NewHub(HubConfig{Node: cfg.Machine, NodeTimeout: cfg.NodeTimeout, CommandTimeout: cfg.CommandTimeout,
		MaxCommandTimeout: cfg.MaxCommandTimeout, Logger: cfg.Logger}, bus)
	h.serves = cfg.Machine
	if err := h.Start(); err != nil {
		h.Close()
		return nil, err
	}
	return &Directory{h: h}, nil
}

// Len returns the devices online in the cluster, as the directory knows
// them.
func (d *Directory) Len() int { return d.h.dirLen() }

// Lookup returns what the directory knows of device, or nil.
func (d *Directory) Lookup(device string) *DeviceInfo { return d.h.dirLookup(device) }

// Collector returns the directory's metrics (warren_gateway_*, as a
// node's Hub.Collector): the devices it knows, and the commands and
// broadcasts sent through its API with their outcomes and round trips.
func (d *Directory) Collector() prometheus.Collector { return d.h.Collector() }

// Close stops the directory.
func (d *Directory) Close() { d.h.Close() }

// dirLen returns the entries of the hub's own directory.
func (h *Hub) dirLen() int {
	n := 0
	for i := range h.dir {
		h.dir[i].mu.RLock()
		n += h.dir[i].t.Len()
		h.dir[i].mu.RUnlock()
	}
	return n
}

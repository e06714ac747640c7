// Package loadgen is warren's load generator: an event-loop client on the
// same engine as the servers, which opens many HTTP/1.1 keep-alive or
// WebSocket connections, holds them, drives requests or messages over
// them, and reports what happened and what it cost the server. The
// warren load command is its command-line front end.
//
// # A run
//
// Run takes a Config and goes through up to three phases, each bounded
// in time so a run always ends by itself:
//
//   - ramp: Conns connections are opened at Rate per second (or as fast
//     as they are accepted, at most 1024 connects in flight), each from
//     the next of Sources, so that on loopback many source addresses
//     (127.0.1.1 … 127.0.1.60) give each its own ephemeral ports. A
//     WebSocket connection counts as open once its upgrade is answered
//     with 101 and the right Sec-WebSocket-Accept.
//   - hold: the connections stay open and idle for Hold, to measure what
//     an idle connection costs the server.
//   - traffic: for Duration, requests (GET on the URL's path, pipelined
//     when Inflight > 1) or WebSocket messages of MsgSize bytes (masked
//     binary frames, expected back from an echo server). Closed-loop, each
//     connection keeps Inflight outstanding and latency runs from sending
//     to the answer. Open-loop (RPS > 0), requests fall due at a fixed
//     total rate, spread over the connections by one scheduler goroutine
//     per event loop, and latency runs from when each request was due, so
//     a server that stalls is charged for the whole stall (no coordinated
//     omission). Answers are matched to requests by order on each
//     connection. Outstanding answers are awaited for up to Timeout after
//     the phase.
//
// Connections the server closes cleanly during traffic (Connection: close,
// a WebSocket Close) are reopened. Every failure is counted by ErrorKind:
// refused and timed-out connects, request timeouts, connections closed by
// the peer, bad statuses, protocol errors.
//
// # Report
//
// The Report holds connects per second, errors by kind, throughput in
// requests (or messages) and bytes, latency percentiles from an
// HdrHistogram-style log-linear Histogram (p50 to p99.9 and max, within
// 0.8%), a per-second timeline, and, given the server's pid or admin URL,
// the server's resident memory per connection and CPU time per request,
// read at the phase boundaries. It marshals to JSON, prints as a table
// (WriteSummary) and draws SVG charts (WriteSVG).
//
// # Devices
//
// With Config.Scenario set to ScenarioDevices the connections are devices
// of warren's gateway on the same client engine: each upgrades with its
// own token, sends telemetry open-loop at RPS across the devices, and
// acks the commands it receives; a NATS subscriber measures telemetry
// delivery and end-to-end latency from each frame's intended send time,
// and a command driver exercises the management API. Report.Devices holds
// what it measured. With Procs > 1 the devices are spread over worker
// processes, each with its own range of device ids (DeviceConfig.First)
// and share of the rates, while the parent alone watches NATS for the
// whole run.
//
// # Many processes
//
// One process can hold only as many connections as its open-file limit
// allows. With Procs > 1, Run starts that many worker processes with
// Config.WorkerCommand (warren load re-executes itself with -worker), gives
// each its share of the connections, rates and source addresses, and
// steps them through the phases together over their standard input and
// output (ServeWorker is the worker's side), so the server is measured at
// the same phase boundaries. The parent asks the workers for their
// counters every second, for the progress line and the timeline, and
// merges their reports at the end with Merge, histograms exactly. Workers stop when their standard input
// closes, and on Linux are killed by the kernel if the parent dies.
//
// # Cost
//
// Beyond the engine's own Conn, the client keeps 120 bytes per connection
// (32 more for the queue of outstanding requests once one is sent): the
// response parser holds no buffer (head and chunk lines stay in the
// engine's pending input until whole; bodies are counted, not kept) and
// the queue is a ring of due times. WebSocket connections are
// websocket.Client connections (websocket.Dial), which add their 96-byte
// websocket.Conn and borrow a frame reader only while a message arrives:
// an idle WebSocket costs 378 bytes of heap here, the engine's Conn
// included (measured over 8,000 connections). Handlers run inline on the engine's loops and never block; one
// client process holds 19,000 connections in about 30 MB.
package loadgen

// Package admin is warren's admin listener: Prometheus metrics, live
// connection introspection, health and readiness probes, pprof and a live
// dashboard, served by plain net/http on an address of its own, apart from
// the traffic the engine carries.
//
// # Listener and access
//
// The listener defaults to 127.0.0.1:9901 and binds a public interface only
// when Config.Addr says so; port 0 picks a free port ("127.0.0.1:0"; ":0"
// would bind every interface) and Start logs the address chosen. With Config.Token set, every endpoint but /healthz, /readyz and the
// dashboard's static page requires "Authorization: Bearer <token>"; the
// dashboard asks for the token and sends it on its own requests. Without a
// token on a loopback address, requests must name the host as localhost or
// an IP literal, which defeats DNS rebinding; a POST from a page of another
// origin is refused either way. Guard applies the same checks to another
// handler and NewHTTPServer gives it the listener's timeouts: the prefork
// parent serves its merged endpoint that way.
//
// # Endpoints
//
//	GET  /                          live dashboard (embedded, works offline)
//	GET  /metrics                   Prometheus text or protobuf exposition
//	GET  /healthz                   200 while the process serves
//	GET  /readyz                    200, or 503 while the engine drains
//	GET  /api/stats                 compact JSON the dashboard polls (?top=N adds the busiest connections)
//	GET  /debug/conns               live connections, filtered and paged (see ConnList)
//	GET  /debug/conns/{id}          one connection (404 when gone, 503 when its loop is busy > 5 s)
//	POST /debug/conns/{id}/close    closes it with reason admin (404 when gone)
//	GET  /debug/pprof/...           runtime profiles in net/http/pprof's formats (no /symbol)
//
// /debug/conns takes state (comma-separated state names), proto
// (comma-separated protocol names), remote (an IP, IP:port or CIDR prefix),
// min_age, max_age and min_idle (Go durations such as 10s, or seconds),
// sort (id, age, idle, bytes, served or queued; all but id sort the largest
// first), offset and limit (default 100, at most 10000). Each connection
// (see Conn) carries its protocol, the listener that accepted it
// ("listener", 1-based in the order the engine added its listeners; 0 for a
// connection the engine dialled) and "outbound" (true when dialled).
// Durations in the answers are seconds, addresses are strings. The walk
// takes each loop's connections on that loop, every loop asked at once
// (engine.Engine.EachConnInfo); a loop that has not begun its part within
// 5 s (a handler blocking it) is left out, and the answer, still 200 and
// within about 5 s however many loops are busy, says so: "partial": true
// and "missed_loops" with the loops' indexes (their connections are
// neither listed nor in "total"; a loop that had begun is listed whole).
// An answer without "partial" is complete. A partial answer is also logged
// as a warning, at most 3 in a row and then one a minute, each with the
// number left unlogged ("suppressed"). /debug/conns/{id} finds its
// connection without describing the others.
//
// # Metrics
//
// Metrics are computed when scraped, from the Source's Stats (the engine's
// own per-loop counters): the admin counts nothing per event and keeps
// nothing per connection, so it adds no byte to an idle connection and no
// work to any connection's I/O. With the default namespace "warren":
//
//	warren_connections_accepted_total               counter  connections admitted
//	warren_connections_active                       gauge    open connections
//	warren_connections{state}                       gauge    open connections by state: new, active, idle, draining,
//	                                                         lingering
//	warren_connections_closed_total{reason}         counter  closed connections by reason (every reason, zeros included;
//	                                                         limit_reached includes connections refused at accept)
//	warren_connection_close_details_total{proto,reason,detail}
//	                                                counter  closes that carried a protocol's close detail, such as a
//	                                                         WebSocket close code ("1001"); only those seen
//	warren_connection_duration_seconds              histogram  lifetime of closed connections
//	warren_received_bytes_total                     counter  payload bytes read
//	warren_sent_bytes_total                         counter  payload bytes written
//	warren_queued_write_bytes                       gauge    output queued over all connections
//	warren_write_watermark_hits_total               counter  writes that found a queue over its high watermark
//	warren_connection_lingers_total{outcome}        counter  lingering closes (engine.Conn.CloseLinger) that ended, by
//	                                                         outcome: eof, bytes, timeout, error, aborted
//	warren_worker_queue_length                      gauge    tasks waiting for a worker
//	warren_workers_busy                             gauge    workers running a task
//	warren_admission_rejected_total{bound}          counter  connections refused at accept, by bound
//	warren_idle_timeout_seconds                     gauge    effective idle timeout (0: disabled)
//	warren_overload_state                           gauge    0 normal; higher values as Config.Overload reports them
//	warren_draining                                 gauge    1 while the engine drains
//	warren_loop_connections{loop}                   gauge    open connections per event loop (balance)
//	warren_loop_connections_accepted_total{loop}    counter  connections handed to each loop
//	warren_loop_busy_ratio{loop}                    gauge    share of its last ~250 ms awake (0 while folded)
//	warren_loop_host{loop}                          gauge    loop running this one: itself, or 0 while folded
//	warren_memory_per_connection_bytes              gauge    process resident memory / open connections (0 with none)
//	warren_io_uring_loops                           gauge    loops waiting, reading and sending through io_uring
//	                                                         (engine.Config.IOUring); 0 without it or when the kernel refused
//	warren_io_uring_sends_total                     counter  sends submitted through the loops' io_urings
//	warren_io_uring_recvs_total                     counter  reads submitted through the loops' io_urings
//
// These 25 families are the engine collector's. With its own registry
// (Config.Registerer nil) the server also exports the Go runtime (go_*) and
// process (process_*) collectors.
//
// The admin reads only the engine: it imports no protocol package. Each protocol package exports its own metrics with a
// collector beside the counters it reads (http1.Server.Collector,
// websocket.Server.Collector), and whatever assembles the process (package
// stack, which warren echo uses) passes them to New as extra collectors,
// made with the same namespace. The dashboard knows these names:
//
//	warren_http_requests_total{class}               counter  HTTP requests answered, class "1xx" … "5xx"
//	warren_http_request_duration_seconds            histogram  request head parsed to response handed to the engine
//	warren_websocket_messages_total{direction}      counter  WebSocket messages, direction "in" or "out"
//
// It reads the extra collectors directly (not the whole registry) once a
// second while it is open: it plots request and message rates and latency
// from the names above and lists every other extra series.
//
// Two panels appear only where their figures exist. The MQTT panel reads
// the mqtt package's collector (warren_mqtt_*: clients by protocol
// version, sessions online and offline, subscriptions, retained and queued
// messages and bytes, packets by type and direction, PUBLISH by QoS, drops
// by reason, refused CONNECTs, takeovers, keep-alive timeouts, protocol
// errors, rate-limited clients, wills) and the gateway's MQTT refusals by
// reason (warren_gateway_mqtt_refused_total); /api/stats carries them as
// "mqtt", and they are not repeated among the other series. The upstream
// panel polls GET /api/upstream (upstream.AdminRoutes, mounted through
// Config.Routes by warren proxy) beside /api/stats: per cluster its breaker
// state, request, retry, hedge, failure and ejection counts, its resource
// thresholds (in use, limit and refusals for the cluster; limit and hits
// per host) and a row per host with health, ejection, draining, requests,
// connections, pending requests and threshold hits. Where /api/upstream is
// not served (404) the page asks again only every 30 polls.
//
// # Cost
//
// A scrape takes one Stats snapshot (a sum over the engine's loops' atomic
// counters, no lock, nothing posted to a loop) and emits 35 constant
// metrics, plus four per loop and one per protocol, reason and close detail
// seen (the engine keeps at most 1024 of those); see BenchmarkScrape and
// TestScrapeSize. /debug/conns and the dashboard's busiest-connections
// table walk every live connection on its loop, so they cost
// O(connections) per request (about 2 µs per connection, mostly the
// engine's snapshot); the dashboard's table is shared by all viewers and refreshed at most
// every two seconds, and less often when the walk is slow, so that it
// takes at most a twentieth of the time.
package admin

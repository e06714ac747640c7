package main

import (
	"flag"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/websocket"
)

// httpFlags registers a flag for every http1.Config field other than the
// engine's (see engineFlags). Zero values mean the documented defaults.
func httpFlags(fs *flag.FlagSet, c *http1.Config) {
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 0, "HTTP keep-alive idle timeout (0: 60s; negative: never; shrinks under overload)")
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", 0, "time to receive a request head once started; 408 after (0: 10s)")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", 0, "time to receive a request body after its head; 408 after (0: 30s)")
	fs.IntVar(&c.MaxRequestsPerConn, "max-requests-per-conn", 0, "requests per connection before Connection: close (0: 100000; negative: unlimited)")
	fs.DurationVar(&c.MaxConnAge, "max-conn-age", 0, "connection age after which the next response closes it (0: 1h; negative: unlimited)")
	fs.IntVar(&c.MaxStreams, "max-streams", 0, "streamed-body requests (POST /upload) in progress at once; 503 over it (0: half the workers; negative: unlimited)")
	fs.IntVar(&c.Limits.MaxHeaderBytes, "max-header-bytes", 0, "request header section limit, 431 over it (0: 64 KiB)")
	fs.IntVar(&c.Limits.MaxHeaders, "max-headers", 0, "request header field count limit, 431 over it (0: 100)")
	fs.IntVar(&c.Limits.MaxURIBytes, "max-uri-bytes", 0, "request-target limit, 414 over it (0: 8 KiB)")
	fs.Int64Var(&c.Limits.MaxBodyBytes, "max-body-bytes", 0, "request body limit, 413 over it (0: 10 MiB; negative: unlimited)")
	fs.BoolVar(&c.Overload.Disabled, "overload-off", false, "disable adaptive keep-alive")
	fs.Int64Var(&c.Overload.MemoryLimit, "memory-limit", 0, "process RSS bytes counted as full memory pressure (0: memory not watched)")
	fs.Float64Var(&c.Overload.ReduceAt, "overload-reduce-at", 0, "pressure where the idle timeout starts shrinking (0: 0.8)")
	fs.Float64Var(&c.Overload.DisableKeepAliveAt, "overload-disable-keepalive-at", 0, "pressure where keep-alive is switched off (0: 0.95)")
	fs.DurationVar(&c.Overload.MinIdleTimeout, "overload-min-idle-timeout", 0, "idle timeout at full pressure (0: 1s)")
	fs.DurationVar(&c.Overload.Interval, "overload-interval", 0, "how often pressure is sampled (0: 1s)")
}

// wsFlags registers a flag for the websocket.Config fields an operator sets.
func wsFlags(fs *flag.FlagSet, c *websocket.Config) {
	fs.IntVar(&c.MaxMessageSize, "ws-max-message", 0, "WebSocket message size limit, close 1009 over it (0: 1 MiB)")
	fs.DurationVar(&c.PingInterval, "ws-ping-interval", 0, "WebSocket ping interval; a peer silent for two intervals is dead (0: 30s; negative: off)")
	fs.DurationVar(&c.CloseTimeout, "ws-close-timeout", 0, "how long a closing WebSocket waits for the peer's close frame (0: 5s)")
	fs.BoolVar(&c.Deflate.Enabled, "ws-deflate", false, "negotiate permessage-deflate")
	fs.BoolVar(&c.Deflate.ServerNoContextTakeover, "ws-deflate-no-context", false, "permessage-deflate without context takeover (saves ~0.9 MB per connection)")
}

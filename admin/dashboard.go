package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/warrenhq/warren/engine"
)

// ui holds the dashboard: one page, a script and a style sheet, with no
// build step and nothing fetched from elsewhere.
//
//go:embed ui
var ui embed.FS

// csp keeps the dashboard to its own origin: no CDN, no inline script.
const csp = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"

func dashboardRoutes(mux *http.ServeMux) {
	sub, err := fs.Sub(ui, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	static := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	})
	mux.Handle("GET /ui/", http.StripPrefix("/ui", http.HandlerFunc(static)))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
}

// mqttJSON is an MQTT broker's figures (<ns>_mqtt_*, from the mqtt
// package's collector), and the gateway's MQTT refusals by reason
// (<ns>_gateway_mqtt_refused_total), for the dashboard's MQTT panel.
// Counters are totals; the dashboard derives rates.
type mqttJSON struct {
	Connections       map[string]float64 `json:"connections"` // by protocol version
	Pending           float64            `json:"pending"`
	ConnectsRefused   float64            `json:"connects_refused"`
	RefusedByReason   map[string]float64 `json:"refused_by_reason"` // the gateway's reasons
	PacketsIn         map[string]float64 `json:"packets_in"`        // by packet type
	PacketsOut        map[string]float64 `json:"packets_out"`
	PublishesIn       map[string]float64 `json:"publishes_in"` // by QoS
	PublishesOut      map[string]float64 `json:"publishes_out"`
	Dropped           map[string]float64 `json:"dropped"` // by reason
	QueuedMessages    float64            `json:"queued_messages"`
	QueuedBytes       float64            `json:"queued_bytes"`
	Retained          float64            `json:"retained"`
	SessionsOnline    float64            `json:"sessions_online"`
	SessionsOffline   float64            `json:"sessions_offline"`
	Subscriptions     float64            `json:"subscriptions"`
	Takeovers         float64            `json:"takeovers"`
	KeepAliveTimeouts float64            `json:"keepalive_timeouts"`
	WillsPublished    float64            `json:"wills_published"`
	ProtocolErrors    float64            `json:"protocol_errors"`
	RateLimited       float64            `json:"rate_limited"`
	// Closes counts MQTT connections the engine closed with an MQTT reason
	// code as their close detail, keyed "close reason/reason code".
	Closes map[string]uint64 `json:"closes_by_reason"`
}

func newMQTTJSON() *mqttJSON {
	return &mqttJSON{Connections: map[string]float64{}, RefusedByReason: map[string]float64{},
		PacketsIn: map[string]float64{}, PacketsOut: map[string]float64{}, PublishesIn: map[string]float64{},
		PublishesOut: map[string]float64{}, Dropped: map[string]float64{}, Closes: map[string]uint64{}}
}

// readMQTT adds the samples of the metric family named name (without the
// "<ns>_mqtt_" prefix) to out.MQTT; several brokers add up.
func readMQTT(out *stats, name string, mf *dto.MetricFamily) {
	if out.MQTT == nil {
		out.MQTT = newMQTTJSON()
	}
	q := out.MQTT
	for _, m := range mf.GetMetric() {
		v := sampleValue(m)
		switch name {
		case "connections":
			q.Connections[label(m, "version")] += v
		case "pending_connections":
			q.Pending += v
		case "connects_refused_total":
			q.ConnectsRefused += v
		case "packets_total":
			if label(m, "direction") == "in" {
				q.PacketsIn[label(m, "type")] += v
			} else {
				q.PacketsOut[label(m, "type")] += v
			}
		case "publishes_total":
			if label(m, "direction") == "in" {
				q.PublishesIn[label(m, "qos")] += v
			} else {
				q.PublishesOut[label(m, "qos")] += v
			}
		case "dropped_total":
			q.Dropped[label(m, "reason")] += v
		case "queued_messages":
			q.QueuedMessages += v
		case "queued_bytes":
			q.QueuedBytes += v
		case "retained_messages":
			q.Retained += v
		case "sessions":
			if label(m, "state") == "online" {
				q.SessionsOnline += v
			} else {
				q.SessionsOffline += v
			}
		case "subscriptions":
			q.Subscriptions += v
		case "takeovers_total":
			q.Takeovers += v
		case "keepalive_timeouts_total":
			q.KeepAliveTimeouts += v
		case "wills_published_total":
			q.WillsPublished += v
		case "protocol_errors_total":
			q.ProtocolErrors += v
		case "rate_limited_total":
			q.RateLimited += v
		}
	}
}

// readMQTTRefusals adds the gateway's MQTT refusals by reason.
func readMQTTRefusals(out *stats, mf *dto.MetricFamily) {
	if out.MQTT == nil {
		out.MQTT = newMQTTJSON()
	}
	for _, m := range mf.GetMetric() {
		out.MQTT.RefusedByReason[label(m, "reason")] += sampleValue(m)
	}
}

// readMQTTCloses adds the engine's close details of MQTT connections (their
// reason codes) to q.
func readMQTTCloses(q *mqttJSON, details []engine.DetailCount) {
	for _, d := range details {
		if strings.HasPrefix(d.Protocol, "mqtt") {
			q.Closes[d.Reason.String()+"/"+d.Detail] += d.Count
		}
	}
}

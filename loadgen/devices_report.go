package loadgen

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// DeviceReport is what a devices run (ScenarioDevices) measured beyond the
// connection figures of its Report. In such a report, Report.Sent counts
// the telemetry frames sent; Report.Requests those received on NATS (all
// sent, without NATS); Report.Unanswered those lost; Report.Latency, the
// timeline and the charts give the end-to-end telemetry latency.
type DeviceReport struct {
	// NATS says whether the telemetry was watched on NATS; without it the
	// received, lost and latency figures are zero.
	NATS bool `json:"nats"`
	// TelemetrySent counts telemetry frames written to the gateway;
	// TelemetryReceived those of this run that arrived on
	// devices.*.telemetry by the end of the grace after the traffic;
	// TelemetryLost the difference.
	TelemetrySent     int64 `json:"telemetry_sent"`
	TelemetryReceived int64 `json:"telemetry_received"`
	TelemetryLost     int64 `json:"telemetry_lost"`
	// SubscriberDropped counts messages the load generator's own NATS
	// subscription dropped for falling behind: part of TelemetryLost that
	// is the load generator's fault, not the gateway's.
	SubscriberDropped int64 `json:"subscriber_dropped"`
	// E2ELatency is the telemetry latency from each frame's intended send
	// time (the open-loop schedule's, so a stall is charged in full) to
	// its arrival on NATS; the same as Report.Latency.
	E2ELatency Summary `json:"e2e_latency"`
	// Hops splits E2ELatency at the time the gateway read each message
	// (its Warren-Received header, on the same machine's clock):
	// HopToGateway from when it was due to then (the load generator's
	// pacing and write, the kernel, the gateway's loop), HopFromGateway
	// from then to its arrival on NATS (the gateway's publish, the NATS
	// server, the subscriber). Nil when the gateway sets no such header.
	Hops map[string]Summary `json:"hops,omitempty"`

	// CommandFrames counts the command frames the devices received;
	// AcksSent the acks they wrote; GatewayErrors the error frames the
	// gateway sent them (also Report.Errors["gateway_error"]).
	CommandFrames int64 `json:"command_frames"`
	AcksSent      int64 `json:"acks_sent"`
	GatewayErrors int64 `json:"gateway_errors"`
	// ConnectRetries counts the failed connects that were tried again
	// (DeviceConfig.Retries): in a reconnect storm, mostly devices refused
	// by the gateway's admission bounds. Each failed try is also in
	// Report.Errors by kind.
	ConnectRetries int64 `json:"connect_retries"`
	// CloseCodes counts the Close frames the gateway sent, by code (1001
	// shutdown, 1008 abuse, 4000 replaced, 4001 token expired).
	CloseCodes map[string]int64 `json:"close_codes,omitempty"`

	// CommandRPS is the rate of commands asked of the management API;
	// CommandsSent counts the requests made, CommandsUnsent those due that
	// found no connected device (or a free slot) within Timeout.
	CommandRPS     float64 `json:"command_rps"`
	CommandsSent   int64   `json:"commands_sent"`
	CommandsUnsent int64   `json:"commands_unsent"`
	// CommandOutcomes counts the answers by CommandOutcome name: "200",
	// "404", "504" and "other".
	CommandOutcomes map[string]int64 `json:"command_outcomes"`
	// CommandLatency is the round trip of every command, from when it was
	// due to its answer, whatever the answer.
	CommandLatency Summary    `json:"command_latency"`
	CommandHist    *Histogram `json:"command_histogram"`
	// CommandHops splits the round trip of the commands answered 200 at
	// their arrival at the device (each load process's commands go to
	// its own devices: one clock): HopToDevice from when the command was
	// due to the device's reading it, HopFromDevice from there to the
	// API's answer. CommandHopHist holds their histograms.
	CommandHops    map[string]Summary    `json:"command_hops,omitempty"`
	CommandHopHist map[string]*Histogram `json:"command_hop_histograms,omitempty"`
}

// merge adds o's counts to d: the devices reports of processes that ran
// one run side by side.
func (d *DeviceReport) merge(o *DeviceReport) {
	d.NATS = d.NATS || o.NATS
	d.TelemetrySent += o.TelemetrySent
	d.TelemetryReceived += o.TelemetryReceived
	d.TelemetryLost += o.TelemetryLost
	d.SubscriberDropped += o.SubscriberDropped
	d.CommandFrames += o.CommandFrames
	d.AcksSent += o.AcksSent
	d.GatewayErrors += o.GatewayErrors
	d.ConnectRetries += o.ConnectRetries
	for c, n := range o.CloseCodes {
		if d.CloseCodes == nil {
			d.CloseCodes = map[string]int64{}
		}
		d.CloseCodes[c] += n
	}
	d.CommandRPS += o.CommandRPS
	d.CommandsSent += o.CommandsSent
	d.CommandsUnsent += o.CommandsUnsent
	if d.CommandOutcomes == nil {
		d.CommandOutcomes = map[string]int64{}
	}
	for k, n := range o.CommandOutcomes {
		d.CommandOutcomes[k] += n
	}
	if d.CommandHist == nil {
		d.CommandHist = &Histogram{}
	}
	if o.CommandHist != nil {
		d.CommandHist.Merge(o.CommandHist)
	}
	for k, h := range o.CommandHopHist {
		if d.CommandHopHist == nil {
			d.CommandHopHist = map[string]*Histogram{}
		}
		if d.CommandHopHist[k] == nil {
			d.CommandHopHist[k] = &Histogram{}
		}
		d.CommandHopHist[k].Merge(h)
	}
}

// finalize recomputes the summaries; rep's own are already computed.
func (d *DeviceReport) finalize(rep *Report) {
	if d.CommandHist == nil {
		d.CommandHist = &Histogram{}
	}
	if d.CommandOutcomes == nil {
		d.CommandOutcomes = map[string]int64{}
	}
	d.E2ELatency = rep.Latency
	d.CommandLatency = summarize(d.CommandHist)
	d.CommandHops = nil
	for k, h := range d.CommandHopHist {
		if d.CommandHops == nil {
			d.CommandHops = map[string]Summary{}
		}
		d.CommandHops[k] = summarize(h)
	}
}

// mode describes the run for the summary's target line.
func (d *DeviceReport) mode(rep *Report) string {
	s := "devices, telemetry "
	if rep.RPS > 0 {
		s += fmt.Sprintf("open-loop at %s/s", count(rep.RPS))
	} else {
		s += "off"
	}
	if d.CommandRPS > 0 {
		s += fmt.Sprintf(", commands at %s/s", count(d.CommandRPS))
	}
	return s
}

// writeSummary writes the traffic lines of a devices run.
func (d *DeviceReport) writeSummary(p func(string, ...any), rep *Report) {
	if d.ConnectRetries > 0 {
		p("retries\t%s failed connects tried again after a jittered backoff", count(float64(d.ConnectRetries)))
	}
	if rep.TrafficSeconds <= 0 {
		return
	}
	p("traffic\t%s", secs(rep.TrafficSeconds))
	if d.NATS {
		lost := 0.0
		if d.TelemetrySent > 0 {
			lost = 100 * float64(d.TelemetryLost) / float64(d.TelemetrySent)
		}
		line := fmt.Sprintf("%s sent, %s received on NATS, %s lost (%.2f%%)", count(float64(d.TelemetrySent)),
			count(float64(d.TelemetryReceived)), count(float64(d.TelemetryLost)), lost)
		if d.SubscriberDropped > 0 {
			line += fmt.Sprintf(", %s of them dropped by our slow subscriber", count(float64(d.SubscriberDropped)))
		}
		p("telemetry\t%s", line)
		p("e2e latency\t%s", percentiles(d.E2ELatency))
		if h, ok := d.Hops[HopToGateway]; ok {
			p("  to gateway\t%s", percentiles(h))
		}
		if h, ok := d.Hops[HopFromGateway]; ok {
			p("  gw to NATS\t%s", percentiles(h))
		}
	} else {
		p("telemetry\t%s sent = %s msg/s (no -nats: delivery and latency not measured)",
			count(float64(d.TelemetrySent)), count(float64(d.TelemetrySent)/rep.TrafficSeconds))
	}
	if d.CommandRPS > 0 || d.CommandFrames > 0 {
		outs := make([]string, 0, numOutcomes)
		for o := range numOutcomes {
			outs = append(outs, fmt.Sprintf("%s %s", o, count(float64(d.CommandOutcomes[o.String()]))))
		}
		p("commands\t%s sent (%s unsent): %s; devices got %s, acked %s", count(float64(d.CommandsSent)),
			count(float64(d.CommandsUnsent)), strings.Join(outs, ", "), count(float64(d.CommandFrames)),
			count(float64(d.AcksSent)))
		p("command rtt\t%s", percentiles(d.CommandLatency))
		if h, ok := d.CommandHops[HopToDevice]; ok {
			p("  to device\t%s", percentiles(h))
		}
		if h, ok := d.CommandHops[HopFromDevice]; ok {
			p("  to answer\t%s", percentiles(h))
		}
	}
	if len(d.CloseCodes) > 0 {
		codes := make([]string, 0, len(d.CloseCodes))
		for c := range d.CloseCodes {
			codes = append(codes, c)
		}
		sort.Slice(codes, func(i, j int) bool {
			a, _ := strconv.Atoi(codes[i])
			b, _ := strconv.Atoi(codes[j])
			return a < b
		})
		for i, c := range codes {
			codes[i] = fmt.Sprintf("%s %s", c, count(float64(d.CloseCodes[c])))
		}
		p("gateway closes\t%s", strings.Join(codes, ", "))
	}
	p("bytes\tin %s (%s/s), out %s (%s/s)", bytesIEC(float64(rep.BytesIn)),
		bytesIEC(float64(rep.BytesIn)/rep.TrafficSeconds), bytesIEC(float64(rep.BytesOut)),
		bytesIEC(float64(rep.BytesOut)/rep.TrafficSeconds))
}

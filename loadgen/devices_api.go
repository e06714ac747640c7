package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CommandOutcome is how the management API answered a command: the
// status the gateway documents for each case, or other.
type CommandOutcome uint8

const (
	// CommandOK is 200: the device acknowledged the command.
	CommandOK CommandOutcome = iota
	// CommandOffline is 404: the device was connected nowhere.
	CommandOffline
	// CommandTimeout is 504: the ack did not come within the command's
	// timeout.
	CommandTimeout
	// CommandOther is any other status, or no answer at all (a transport
	// error, or the load generator's own timeout: the command timeout
	// plus Config.Timeout).
	CommandOther
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"200", "404", "504", "other"}

// String returns the key of the outcome in DeviceReport.CommandOutcomes.
func (o CommandOutcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// maxCommandsInflight bounds the commands waiting for an answer; one due
// when they are all taken waits, and its wait counts in its round trip.
const maxCommandsInflight = 1 << 14

// commander drives the management API of a devices run: commands paced
// open-loop at CommandRPS, each to a device picked at random, on a
// goroutine per request in flight (requests, not devices). It runs in the
// process that runs the devices, or, in a multi-process run, by default in
// the parent, which runs no devices (DeviceConfig.CommandsInDevices).
type commander struct {
	dc      DeviceConfig
	timeout time.Duration // Config.Timeout: added to the command timeout
	t0      time.Time     // the run's clock: dues count from it
	wall0   int64         // t0 as Unix nanoseconds, for the devices' "at"
	// pickDev returns the index (from DeviceConfig.First) of the device
	// to command, or -1 when it finds none.
	pickDev func() int
	base    string // http://host:port/v1/devices/
	body    []byte
	client  *http.Client
	ctx     context.Context
	cancel  context.CancelFunc
	slots   chan struct{}
	wg      sync.WaitGroup

	sent     atomic.Int64
	unsent   atomic.Int64
	outcomes [numOutcomes]atomic.Int64
	seq      atomic.Uint64 // numbers the commands' payloads: {"n":seq}

	// mu guards the round-trip histogram and the hops.
	mu  sync.Mutex
	lat Histogram
	// hops splits a command's round trip at its arrival at the device,
	// which the device writes in its ack's result as {"at":<Unix ns>}
	// (every process of a run is on the machine's one wall clock, as the
	// telemetry's "t" is): hops[0] from when it was due to the device's
	// reading it (this process's HTTP client, the gateway's API, NATS,
	// the node holding the device, its write), hops[1] from there to the
	// API's answer here (the ack's way back, the same hops in reverse).
	hops [2]Histogram
}

// Hop names of DeviceReport.CommandHops: where a command's round trip
// goes.
const (
	HopToDevice   = "due_to_device"
	HopFromDevice = "device_to_answer"
)

// appendArrival appends the result a simulated device puts in its ack of
// a load generator's command: {"at":<Unix ns of its arrival>}.
func appendArrival(b []byte, at int64) []byte {
	return append(strconv.AppendInt(append(b, `{"at":`...), at, 10), '}')
}

// newCommander returns a commander for the run dc whose clock started at
// t0; pick chooses the devices (see commander.pickDev).
func newCommander(dc DeviceConfig, timeout time.Duration, t0 time.Time, pick func() int) (*commander, error) {
	u, err := url.Parse(dc.APIURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: management API URL %q: want http://host:port", ErrBadURL, dc.APIURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 1024
	c := &commander{
		dc:      dc,
		timeout: timeout,
		t0:      t0,
		wall0:   t0.UnixNano(),
		pickDev: pick,
		base:    strings.TrimRight(dc.APIURL, "/") + "/v1/devices/",
		body:    fmt.Appendf(nil, `{"name":"ping","timeout":%q,"payload":{"n":`, dc.CommandTimeout.String()),
		client:  &http.Client{Transport: tr},
		slots:   make(chan struct{}, maxCommandsInflight),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func (c *commander) now() int64 { return int64(time.Since(c.t0)) }

// drive sends the commands due from start until end.
func (c *commander) drive(ctx context.Context, start, end int64) {
	p := newPacer(start, c.dc.CommandRPS, 0, 1)
	pace(ctx, newRealClock(c.t0), p, end, int64(c.timeout), c.send,
		func(n int64) { c.unsent.Add(n) })
}

// send starts a request for each of dues while a device and a slot are
// at hand, and returns how many it started.
func (c *commander) send(dues []int64) int {
	for i, due := range dues {
		dev := c.pickDev()
		if dev < 0 {
			return i
		}
		select {
		case c.slots <- struct{}{}:
		default:
			return i
		}
		c.wg.Add(1)
		go c.do(dev, due)
	}
	return len(dues)
}

// pickConnected returns a connected device of r chosen at random, or -1
// when a few draws find none.
func pickConnected(r *devRunner) int {
	devs := r.devs
	for range 32 {
		i := rand.IntN(len(devs))
		d := &devs[i]
		d.mu.Lock()
		up := d.state == csOpen && !d.announced
		d.mu.Unlock()
		if up {
			return i
		}
	}
	return -1
}

// commandAnswer is what the commander reads of a 200 answer: the
// device's arrival time, from its ack's result.
type commandAnswer struct {
	Result struct {
		At int64 `json:"at"`
	} `json:"result"`
}

// do sends one command to device dev and records its outcome and round
// trip, measured from when it was due.
func (c *commander) do(dev int, due int64) {
	defer func() {
		<-c.slots
		c.wg.Done()
	}()
	ctx, cancel := context.WithTimeout(c.ctx, c.dc.CommandTimeout+c.timeout)
	defer cancel()
	out := CommandOther
	var at int64
	n := c.seq.Add(1)
	body := append(strconv.AppendUint(append([]byte(nil), c.body...), n, 10), "}}"...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+DeviceID(c.dc.First+dev)+"/commands",
		bytes.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "warren-load")
		if c.dc.APIToken != "" {
			req.Header.Set("Authorization", "Bearer "+c.dc.APIToken)
		}
		c.sent.Add(1)
		var resp *http.Response
		if resp, err = c.client.Do(req); err == nil {
			var b []byte
			if resp.StatusCode == http.StatusOK {
				b, _ = io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				out = CommandOK
				var a commandAnswer
				if json.Unmarshal(b, &a) == nil {
					at = a.Result.At
				}
			case http.StatusNotFound:
				out = CommandOffline
			case http.StatusGatewayTimeout:
				out = CommandTimeout
			}
		}
	}
	now := c.now()
	rtt := time.Duration(now - due)
	c.outcomes[out].Add(1)
	c.mu.Lock()
	c.lat.Record(rtt)
	if at != 0 && out == CommandOK {
		dueWall, nowWall := c.wall0+due, c.wall0+now
		c.hops[0].Record(time.Duration(max(at-dueWall, 0)))
		c.hops[1].Record(time.Duration(max(nowWall-at, 0)))
	}
	c.mu.Unlock()
}

// wait waits up to d for the commands in flight.
func (c *commander) wait(ctx context.Context, d time.Duration) {
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// close cancels the commands still in flight and waits for them.
func (c *commander) close() {
	c.cancel()
	c.wg.Wait()
	c.client.CloseIdleConnections()
}

// report fills the command figures of dr; call it after close.
func (c *commander) report(dr *DeviceReport) {
	dr.CommandRPS = c.dc.CommandRPS
	dr.CommandsSent = c.sent.Load()
	dr.CommandsUnsent = c.unsent.Load()
	for o := range numOutcomes {
		dr.CommandOutcomes[o.String()] = c.outcomes[o].Load()
	}
	c.mu.Lock()
	dr.CommandHist.Merge(&c.lat)
	if c.hops[0].Count() > 0 {
		dr.CommandHopHist = map[string]*Histogram{HopToDevice: {}, HopFromDevice: {}}
		dr.CommandHopHist[HopToDevice].Merge(&c.hops[0])
		dr.CommandHopHist[HopFromDevice].Merge(&c.hops[1])
	}
	c.mu.Unlock()
}

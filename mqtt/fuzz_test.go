package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// fuzzSeeds are the packets of the tables: each with the version its decoder
// starts at.
func fuzzSeeds() (seeds []struct {
	in []byte
	v  byte
}) {
	add := func(in []byte, v Version) {
		seeds = append(seeds, struct {
			in []byte
			v  byte
		}{in, byte(v)})
	}
	for _, c := range packetCases {
		add(bin(c.in), c.decoderVersion())
	}
	for _, c := range errorCases {
		add(bin(c.in), c.v)
	}
	for _, c := range roundTrips() {
		v := c.v
		if c.p.Type() == TypeConnect {
			v = 0
		}
		add(Append(nil, c.v, c.p), v)
	}
	for _, v := range []Version{Version311, Version5} {
		in, _ := stream(v)
		add(in, 0)
	}
	return seeds
}

var fuzzLimits = &Limits{MaxPacketSize: 1 << 16, MaxTopicFilters: 8, MaxUserProperties: 8}

// FuzzDecode decodes arbitrary bytes as a connection's stream. Every packet
// decoded must re-encode to bytes that decode to the same packet, and every
// refusal must be an *Error with a reason code of the specification.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.in, s.v)
	}
	f.Fuzz(func(t *testing.T, in []byte, version byte) {
		d := Decoder{Version: Version(version % 6)} // 0 to 5: levels 1 to 3 are never set by CONNECT
		for len(in) > 0 {
			v := d.Version
			n, p, err := d.Decode(in, fuzzLimits)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || !e.Code.IsError() || reasonNames[e.Code] == "" {
					t.Fatalf("error %v is not an *Error with a failure code", err)
				}
				if n != 0 || p != nil {
					t.Fatal("packet returned with an error")
				}
				return
			}
			if n == 0 {
				if p != nil {
					t.Fatal("packet returned with n == 0")
				}
				if size, err := PacketSize(in); err == nil && size != 0 && size <= len(in) {
					t.Fatalf("needs more bytes with a complete packet of %d in %d", size, len(in))
				}
				return
			}
			if n > len(in) {
				t.Fatalf("consumed %d of %d", n, len(in))
			}
			if p.Type() == TypeConnect {
				v = 0
			}
			enc := Append(nil, d.Version, p)
			if len(enc) > n {
				t.Fatalf("re-encoding is longer (%d) than the packet (%d)", len(enc), n)
			}
			d2 := Decoder{Version: v}
			n2, p2, err := d2.Decode(enc, fuzzLimits)
			if err != nil || n2 != len(enc) {
				t.Fatalf("re-encoding % x of %s: %d, %v", enc, show(p), n2, err)
			}
			if !same(p, p2) {
				t.Fatalf("re-encoding decodes to\n%s\nnot\n%s", show(p2), show(p))
			}
			if enc2 := Append(nil, d.Version, p2); !bytes.Equal(enc, enc2) {
				t.Fatalf("encodings differ:\n% x\n% x", enc, enc2)
			}
			in = in[n:]
		}
	})
}

// TestWriteFuzzCorpus writes the seeds to testdata/fuzz/FuzzDecode when
// MQTT_WRITE_CORPUS is set: go test -run TestWriteFuzzCorpus ./mqtt/ with
// MQTT_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("MQTT_WRITE_CORPUS") == "" {
		t.Skip("set MQTT_WRITE_CORPUS=1 to write the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds() {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", s.in, s.v)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// panicCounter is a slog handler that counts handler panics logged by the
// engine.
type panicCounter struct{ n *atomic.Int32 }

func (h panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h panicCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.n.Add(1)
	}
	return nil
}
func (h panicCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicCounter) WithGroup(string) slog.Handler      { return h }

// FuzzServer feeds arbitrary bytes to the broker as a client's stream, in
// two writes, and checks that the broker answers or closes without a
// panic, and that the connection ends once the client stops sending.
func FuzzServer(f *testing.F) {
	for _, v := range []Version{Version311, Version5} {
		s, _ := script(v, "fuzz")
		f.Add(s, uint16(len(s)/2))
		f.Add(s[:len(s)-3], uint16(7))
	}
	f.Add(AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("x"), Props: Properties{TopicAliasMaximum: 3}}), uint16(0))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, uint16(2))
	var panics atomic.Int32
	b := startBroker(f, Config{MaxInflight: 4, MaxSubscriptions: 4, ConnectTimeout: 200 * time.Millisecond},
		engine.Config{Loops: 2, TickInterval: 10 * time.Millisecond, Logger: slog.New(panicCounter{&panics})})
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		c, err := net.Dial("tcp", b.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		k := int(cut) % (len(in) + 1)
		c.Write(in[:k])
		c.Write(in[k:])
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var ne net.Error
		if _, err := io.Copy(io.Discard, c); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the broker did not close the connection: %v", err)
		}
		if panics.Load() > 0 {
			t.Fatal("handler panic")
		}
	})
}

package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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

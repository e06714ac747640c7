package gateway

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzPlainTelemetry checks the telemetry fast path against a full
// decode: whatever it accepts decodes to a telemetry frame whose data is
// the very bytes it returned.
func FuzzPlainTelemetry(f *testing.F) {
	for _, s := range []string{
		`{"type":"telemetry","data":{"t":1,"temp":21.5}}`,
		`{"type":"telemetry","data":42}`,
		`{"type":"telemetry","data": "x" }`,
		`{"type":"telemetry","data":1,"type":"ack"}`,
		`{"type":"telemetry","data":{"a":1},"b":{}}`,
		`{"type":"telemetry","data":{}}}`,
		`{"type":"telemetry","data":{"a":1}`,
		`{"type":"telemetry","data":}`,
		`{"type":"ack","id":"x","status":"ok"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := plainTelemetry(b)
		if v == nil {
			return
		}
		var fr frame
		if err := json.Unmarshal(b, &fr); err != nil {
			t.Fatalf("fast path took %q, which does not decode: %v", b, err)
		}
		if fr.Type != "telemetry" || !bytes.Equal(fr.Data, v) {
			t.Fatalf("fast path took %q as data %q; the decoder says type %q data %q", b, v, fr.Type, fr.Data)
		}
	})
}

func TestPlainTelemetry(t *testing.T) {
	for in, want := range map[string]string{
		`{"type":"telemetry","data":{"t":1}}`:      `{"t":1}`,
		`{"type":"telemetry","data": [1,2] } `:     `[1,2]`,
		`{"type":"telemetry","data":1,"x":2}`:      "",
		`{"type":"telemetry","data":{}}}`:          "",
		`{"type":"telemetry","data":"\u00a0"}`:     `"\u00a0"`,
		`{"data":1,"type":"telemetry"}`:            "",
		`{"type":"telemetry","data":1` + "\u00a0}": "",
	} {
		if got := string(plainTelemetry([]byte(in))); got != want {
			t.Errorf("plainTelemetry(%s) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkTelemetryFrame compares the telemetry fast path with the full
// decode it stands in for, on the load generator's 100-byte frame.
func BenchmarkTelemetryFrame(b *testing.B) {
	msg := []byte(`{"type":"telemetry","data":{"t":1764889200000000000,"run":"0a1b2c3d","dev":42,"seq":7,"temp":21.5,"hum":40,"pad":"xxxxxxxxxxxxxx"}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if plainTelemetry(msg) == nil {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var f frame
			if json.Unmarshal(msg, &f) != nil || f.Type != "telemetry" {
				b.Fatal("not decoded")
			}
		}
	})
}

package http1

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendStatusLine(t *testing.T) {
	tests := []struct {
		minor, status int
		want          string
	}{
		{1, 200, "HTTP/1.1 200 OK\r\n"},
		{0, 404, "HTTP/1.0 404 Not Found\r\n"},
		{1, 431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
		{7, 505, "HTTP/1.1 505 HTTP Version Not Supported\r\n"},
		{1, 299, "HTTP/1.1 299 \r\n"},
		{0, 999, "HTTP/1.0 999 \r\n"},
	}
	for _, tc := range tests {
		if got := string(AppendStatusLine([]byte("x"), tc.minor, tc.status)); got != "x"+tc.want {
			t.Errorf("AppendStatusLine(%d, %d) = %q, want %q", tc.minor, tc.status, got, "x"+tc.want)
		}
	}
	for code, text := range statusText {
		if text == "" {
			continue
		}
		want := "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		if got := string(AppendStatusLine(nil, 1, code)); got != want || StatusText(code) != text {
			t.Errorf("%d: %q, want %q", code, got, want)
		}
	}
	dst := make([]byte, 0, 64)
	if a := testing.AllocsPerRun(100, func() { AppendStatusLine(dst, 1, 200); AppendStatusLine(dst, 1, 299) }); a != 0 {
		t.Errorf("AppendStatusLine allocates %v times", a)
	}
	for _, bad := range []int{0, 99, 1000, -200} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendStatusLine(%d) did not panic", bad)
				}
			}()
			AppendStatusLine(nil, 1, bad)
		}()
	}
}

func TestStatusText(t *testing.T) {
	for code, want := range map[int]string{200: "OK", 413: "Content Too Large", 414: "URI Too Long", 299: "", -1: "", 100000: ""} {
		if got := StatusText(code); got != want {
			t.Errorf("StatusText(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestDateCache(t *testing.T) {
	var c DateCache
	t0 := time.Date(1994, time.November, 6, 8, 49, 37, 0, time.UTC)
	v := c.Value(t0)
	if string(v) != "Sun, 06 Nov 1994 08:49:37 GMT" {
		t.Fatalf("Value = %q", v)
	}
	// The same second, in another zone and later within the second, is
	// served from the cache.
	paris := time.FixedZone("CET", 3600)
	if again := c.Value(t0.Add(999 * time.Millisecond).In(paris)); &again[0] != &v[0] {
		t.Fatal("same second formatted again")
	}
	if a := testing.AllocsPerRun(100, func() { c.Value(t0.Add(500 * time.Millisecond)) }); a != 0 {
		t.Errorf("cached Value allocates %v times", a)
	}
	next := c.Value(t0.Add(time.Second).In(paris))
	if string(next) != "Sun, 06 Nov 1994 08:49:38 GMT" {
		t.Fatalf("next second: %q", next)
	}
	if string(v) != "Sun, 06 Nov 1994 08:49:37 GMT" {
		t.Fatal("an earlier value changed")
	}
	if got := string(c.AppendHeader([]byte("a\r\n"), t0)); got != "a\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" {
		t.Fatalf("AppendHeader = %q", got)
	}
	if got := c.Value(t0); cap(got) != len(got) {
		t.Fatal("value has spare capacity a caller could append into")
	}
}

// TestDateCacheConcurrent is for the race detector: loops on several
// goroutines share one cache across second boundaries.
func TestDateCacheConcurrent(t *testing.T) {
	var c DateCache
	base := time.Date(2025, time.March, 1, 23, 59, 58, 0, time.UTC)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				now := base.Add(time.Duration(i+g) * time.Millisecond)
				got := c.Value(now)
				if want := now.UTC().Format(TimeFormat); string(got) != want {
					t.Errorf("Value(%v) = %q, want %q", now, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestAppendChunk(t *testing.T) {
	if got := string(AppendChunk([]byte("x"), []byte("hello"))); got != "x5\r\nhello\r\n" {
		t.Errorf("AppendChunk = %q", got)
	}
	if got := AppendChunk([]byte("x"), nil); string(got) != "x" {
		t.Errorf("empty chunk = %q", got)
	}
	big := bytes.Repeat([]byte("z"), 300)
	if got := string(AppendChunk(nil, big)); got != "12c\r\n"+string(big)+"\r\n" {
		t.Errorf("300-byte chunk starts %q", got[:8])
	}
	if got := string(AppendChunkHeader(nil, 4096)); got != "1000\r\n" {
		t.Errorf("AppendChunkHeader = %q", got)
	}
	if got := AppendChunkHeader([]byte("x"), 0); string(got) != "x" {
		t.Errorf("AppendChunkHeader(0) = %q", got)
	}
	if got := string(AppendLastChunk([]byte("x"))); got != "x0\r\n\r\n" {
		t.Errorf("AppendLastChunk = %q", got)
	}

	// What the writer produces, the reader reads back.
	var enc []byte
	var want strings.Builder
	for i := range 20 {
		p := bytes.Repeat([]byte{'a' + byte(i)}, i*37)
		enc = AppendChunk(enc, p)
		want.Write(p)
	}
	enc = AppendLastChunk(enc)
	if o := decodeChunked(enc, &Limits{MaxBodyBytes: -1}); !o.done || o.err != nil || o.data != want.String() || o.consumed != len(enc) {
		t.Errorf("round trip: done %t err %v, %d bytes of %d", o.done, o.err, len(o.data), want.Len())
	}
}

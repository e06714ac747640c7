//go:build !linux

package schedslice

import (
	"errors"
	"testing"
	"time"
)

// Off Linux a slice cannot be asked for: New says so.
func TestUnsupportedOffLinux(t *testing.T) {
	if _, err := New(Config{Slice: time.Millisecond}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("New: %v, want ErrUnsupported", err)
	}
}

//go:build !linux

package schedslice

import (
	"fmt"
	"time"
)

// first fails: only Linux has per-thread slices for normal threads.
func (s *Sweeper) first() error { return fmt.Errorf("%w: not on this platform", ErrUnsupported) }

// sweepThreads is never reached off Linux: New refuses a non-zero slice.
func sweepThreads(slice time.Duration) result { return result{} }

// Supported reports ErrUnsupported: only Linux has per-thread slices for
// normal threads.
func Supported() error { return fmt.Errorf("%w: not on this platform", ErrUnsupported) }

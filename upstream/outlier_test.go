package upstream

import (
	"sync"
	"testing"
	"time"
)

func TestResultFromStatus(t *testing.T) {
	for status, want := range map[int]Result{200: ResultSuccess, 404: ResultSuccess, 429: ResultSuccess,
		500: ResultServerError, 501: ResultServerError, 502: ResultGatewayError, 503: ResultGatewayError,
		504: ResultGatewayError, 599: ResultServerError} {
		if got := ResultFromStatus(status); got != want {
			t.Errorf("%d: %v, want %v", status, got, want)
		}
	}
}

func TestOutlierConsecutive5xx(t *testing.T) {
	o := NewOutlierDetector(10, OutlierConfig{})
	for i := range 4 {
		if e := o.Record(0, ResultServerError, at(time.Duration(i)*time.Millisecond)); e != EjectNone {
			t.Fatalf("ejected after %d", i+1)
		}
	}
	// A success in the run starts it over.
	o.Record(0, ResultSuccess, at(5*time.Millisecond))
	for i := range 4 {
		o.Record(0, ResultServerError, at(time.Duration(6+i)*time.Millisecond))
	}
	if o.Ejected(0, at(10*time.Millisecond)) {
		t.Fatal("ejected after a broken run")
	}
	if e := o.Record(0, ResultServerError, at(10*time.Millisecond)); e != EjectConsecutive5xx {
		t.Fatalf("fifth 5xx in a row: %v", e)
	}
	until, ok := o.EjectedUntil(0, at(10*time.Millisecond))
	if !ok || until != at(10*time.Millisecond+30*time.Second) {
		t.Fatalf("ejected until %v, want +30s", until.Sub(t0))
	}
	// Results arriving while ejected are ignored.
	if e := o.Record(0, ResultServerError, at(time.Second)); e != EjectNone {
		t.Fatalf("ejected host ejected again: %v", e)
	}
	if !o.Ejected(0, until.Add(-1)) || o.Ejected(0, until) {
		t.Fatal("ejection does not end exactly at its time")
	}
	if s := o.Stats(until); s.Consecutive5xx != 1 || s.Ejected != 0 || s.Ejections(EjectConsecutive5xx) != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestOutlierConsecutiveGatewayFailure(t *testing.T) {
	o := NewOutlierDetector(10, OutlierConfig{Consecutive5xx: -1})
	// Server errors do not count toward gateway failures, and break the run.
	for _, r := range []Result{ResultGatewayError, ResultConnectFailure, ResultServerError} {
		o.Record(1, r, t0)
	}
	for i := range 4 {
		if e := o.Record(1, ResultConnectFailure, t0); e != EjectNone {
			t.Fatalf("ejected after %d", i+1)
		}
	}
	if e := o.Record(1, ResultGatewayError, t0); e != EjectConsecutiveGatewayFailure {
		t.Fatalf("fifth gateway failure: %v", e)
	}
	// With both on, a run of gateway failures names the more specific one.
	both := NewOutlierDetector(10, OutlierConfig{})
	var e Ejection
	for range 5 {
		e = both.Record(0, ResultConnectFailure, t0)
	}
	if e != EjectConsecutiveGatewayFailure {
		t.Fatalf("gateway run with both detectors: %v", e)
	}
}

func TestOutlierFailurePercentage(t *testing.T) {
	cfg := OutlierConfig{Consecutive5xx: -1, ConsecutiveGatewayFailure: -1}
	o := NewOutlierDetector(5, cfg)
	// 49 requests, 45 failed (92%): under the volume, nothing happens.
	var e Ejection
	for i := range 49 {
		r := ResultServerError
		if i%12 == 0 {
			r = ResultSuccess
		}
		if e = o.Record(2, r, at(time.Duration(i)*time.Millisecond)); e != EjectNone {
			t.Fatalf("ejected at request %d, under the volume", i+1)
		}
	}
	if e = o.Record(2, ResultServerError, at(50*time.Millisecond)); e != EjectFailurePercentage {
		t.Fatalf("50th request at 92%% failures: %v", e)
	}
	// 80% failures stays in.
	for i := range 100 {
		r := ResultSuccess
		if i%5 != 0 {
			r = ResultGatewayError
		}
		if e = o.Record(3, r, t0); e != EjectNone {
			t.Fatalf("ejected at 80%% failures (request %d)", i+1)
		}
	}
	// The window restarts each Interval: 49 failures, then a new window.
	for range 49 {
		o.Record(4, ResultServerError, t0)
	}
	if e = o.Record(4, ResultServerError, at(10*time.Second)); e != EjectNone {
		t.Fatal("counted across windows")
	}
	// Fewer hosts than the minimum: off.
	few := NewOutlierDetector(4, cfg)
	for range 100 {
		if few.Record(0, ResultServerError, t0) != EjectNone {
			t.Fatal("failure percentage with 4 hosts")
		}
	}
}

func TestOutlierBackoffAndCap(t *testing.T) {
	o := NewOutlierDetector(1, OutlierConfig{})
	now := t0
	for k := 1; k <= 12; k++ {
		var e Ejection
		for range 5 {
			e = o.Record(0, ResultServerError, now)
		}
		if e == EjectNone {
			t.Fatalf("ejection %d did not happen", k)
		}
		until, _ := o.EjectedUntil(0, now)
		want := min(time.Duration(k)*30*time.Second, 300*time.Second)
		if got := until.Sub(now); got != want {
			t.Fatalf("ejection %d lasts %v, want %v", k, got, want)
		}
		now = until // fail again the moment it returns
	}
	// Staying in for an Interval per ejection forgives them: the 10x
	// multiplier decays one per 10s, so 100s later the next ejection is
	// back to the base time.
	now = now.Add(100 * time.Second)
	for range 5 {
		o.Record(0, ResultServerError, now)
	}
	if until, _ := o.EjectedUntil(0, now); until.Sub(now) != 30*time.Second {
		t.Fatalf("after a calm spell the ejection lasts %v, want 30s", until.Sub(now))
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	// 10% of 25 hosts is 2.
	o := NewOutlierDetector(25, OutlierConfig{})
	eject := func(h int) Ejection {
		var e Ejection
		for range 5 {
			e = o.Record(h, ResultServerError, t0)
		}
		return e
	}
	if eject(0) == EjectNone || eject(1) == EjectNone {
		t.Fatal("first two not ejected")
	}
	if e := eject(2); e != EjectNone {
		t.Fatalf("third ejected past 10%%: %v", e)
	}
	if s := o.Stats(t0); s.Overflow != 1 || s.Ejected != 2 {
		t.Fatalf("stats %+v", s)
	}
	// Another run of failures is another overflow.
	if e := eject(2); e != EjectNone || o.Stats(t0).Overflow != 2 {
		t.Fatal("second run not counted as an overflow")
	}
	// When the first two return there is room again.
	later := at(30 * time.Second)
	var e Ejection
	for range 5 {
		e = o.Record(2, ResultServerError, later)
	}
	if e != EjectConsecutive5xx {
		t.Fatalf("after the others returned: %v", e)
	}
	// At least one host can always be ejected, even of a small set.
	small := NewOutlierDetector(3, OutlierConfig{})
	for range 5 {
		e = small.Record(0, ResultServerError, t0)
	}
	if e == EjectNone {
		t.Fatal("a set of 3 must still eject one")
	}
}

func TestOutlierApply(t *testing.T) {
	s := NewHostSet(hosts(3), HostSetConfig{})
	o := NewOutlierDetector(3, OutlierConfig{})
	for range 5 {
		o.Record(1, ResultConnectFailure, t0)
	}
	o.Apply(s, t0)
	if !s.Ejected(1) || s.AvailableCount() != 2 {
		t.Fatal("Apply did not eject host 1")
	}
	o.Apply(s, at(30*time.Second))
	if s.Ejected(1) || s.AvailableCount() != 3 {
		t.Fatal("Apply did not return host 1")
	}
}

func TestOutlierConcurrent(t *testing.T) {
	o := NewOutlierDetector(8, OutlierConfig{})
	s := NewHostSet(hosts(8), HostSetConfig{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				now := at(time.Duration(i) * 100 * time.Millisecond)
				o.Record((g+i)%8, Result(i%int(numResults)), now)
				o.Ejected(i%8, now)
				if i%100 == 0 {
					o.Apply(s, now)
				}
			}
		}()
	}
	wg.Wait()
	if st := o.Stats(at(time.Hour)); st.Ejected != 0 {
		t.Fatalf("hosts still ejected an hour later: %+v", st)
	}
}

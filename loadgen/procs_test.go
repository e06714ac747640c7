package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a worker process.
func TestMain(m *testing.M) {
	switch os.Getenv("LOADGEN_TEST_WORKER") {
	case "1":
		if err := ServeWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "fail":
		fmt.Fprintln(os.Stderr, "boom: worker cannot start")
		os.Exit(3)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func testWorker(mode string) func(int) *exec.Cmd {
	return func(int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "LOADGEN_TEST_WORKER="+mode)
		return cmd
	}
}

func TestRunProcs(t *testing.T) {
	hs := startHTTP(t)
	cfg := quick(hs.url)
	cfg.Conns, cfg.Procs, cfg.Inflight = 10, 2, 2
	cfg.Duration = 1200 * time.Millisecond
	cfg.Sources = loopbackSources(t)
	cfg.WorkerCommand = testWorker("1")
	rep := run(t, cfg)
	if rep.Procs != 2 || rep.ConnsAsked != 10 || rep.Connects != 10 || rep.ConnsPeak != 10 {
		t.Fatalf("procs %d asked %d connects %d peak %d", rep.Procs, rep.ConnsAsked, rep.Connects, rep.ConnsPeak)
	}
	if rep.Requests == 0 || rep.Requests != hs.requests.Load() || rep.TotalErrors() != 0 {
		t.Fatalf("requests %d (server %d) errors %v", rep.Requests, hs.requests.Load(), rep.Errors)
	}
	if rep.LatencyHist.Count() != uint64(rep.Requests) {
		t.Fatalf("merged histogram holds %d, requests %d", rep.LatencyHist.Count(), rep.Requests)
	}
	var sum int64
	for _, s := range rep.Timeline {
		sum += s.Requests
	}
	if sum != rep.Requests || len(rep.Timeline) == 0 {
		t.Fatalf("timeline sums to %d of %d", sum, rep.Requests)
	}
}

func TestRunProcsWorkerFails(t *testing.T) {
	hs := startHTTP(t)
	cfg := quick(hs.url)
	cfg.Procs = 2
	cfg.WorkerCommand = testWorker("fail")
	_, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrWorker) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("error %v", err)
	}
	cfg.WorkerCommand = nil
	if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrNoWorkerCommand) {
		t.Fatalf("error %v", err)
	}
}

func TestWorkerConfigSplit(t *testing.T) {
	cfg := Config{Conns: 10, Rate: 100, RPS: 1000, Sources: mustSources(t, "5"), ServerPID: 7, AdminURL: "x",
		Procs: 3}
	total := 0
	var srcs int
	for i := range 3 {
		wc := workerConfig(cfg, i, 3)
		total += wc.Conns
		srcs += len(wc.Sources)
		if wc.Rate != 100.0/3 || wc.RPS != 1000.0/3 || wc.ServerPID != 0 || wc.AdminURL != "" || wc.Procs != 1 {
			t.Fatalf("worker %d: %+v", i, wc)
		}
	}
	if total != 10 || srcs != 5 {
		t.Fatalf("conns %d sources %d", total, srcs)
	}
}

// The built warren binary, shared by the command tests.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func warrenBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the warren command; skipped with -short")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "loadgen-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "warren")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/warren").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestCommandProcs runs warren load -procs 2 end to end: the parent
// re-executes itself as two workers, merges their results and writes the
// summary, the JSON report and the charts.
func TestCommandProcs(t *testing.T) {
	bin := warrenBinary(t)
	hs := startHTTP(t)
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "report.json")
	src := ""
	if len(loopbackSources(t)) > 0 {
		src = "127.0.1.1-127.0.1.4"
	}
	cmd := exec.Command(bin, "load", "-url", hs.url, "-conns", "20", "-procs", "2", "-duration", "1200ms",
		"-inflight", "2", "-src", src, "-json", jsonPath, "-svg", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("warren load: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Procs != 2 || rep.Connects != 20 || rep.Requests == 0 || rep.Requests != hs.requests.Load() ||
		rep.TotalErrors() != 0 {
		t.Fatalf("report: procs %d connects %d requests %d (server %d) errors %v", rep.Procs, rep.Connects,
			rep.Requests, hs.requests.Load(), rep.Errors)
	}
	if !regexp.MustCompile(`(?m)^processes +2$`).MatchString(stdout.String()) ||
		!regexp.MustCompile(`traffic +conns +(10|20) `).MatchString(stderr.String()) {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	}
	wellFormed(t, filepath.Join(dir, "latency.svg"))
	wellFormed(t, filepath.Join(dir, "conns.svg"))
}

// TestCommandExitCodes checks -h and the -max-errors exit code.
func TestCommandExitCodes(t *testing.T) {
	bin := warrenBinary(t)
	out, err := exec.Command(bin, "load", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"-url", "-conns", "-rate", "-src", "-hold", "-duration", "-rps", "-inflight",
		"-msg-size", "-timeout", "-server-pid", "-admin", "-loops", "-procs", "-json", "-svg", "-max-errors"} {
		if !bytes.Contains(out, []byte(f+" ")) {
			t.Errorf("-h lacks %s", f)
		}
	}
	refused := "http://" + closedPort(t) + "/"
	err = exec.Command(bin, "load", "-url", refused, "-conns", "4", "-duration", "100ms", "-quiet").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("all connects refused: %v, want exit 1", err)
	}
	err = exec.Command(bin, "load", "-url", refused, "-conns", "4", "-duration", "100ms", "-quiet",
		"-max-errors", "1").Run()
	if err != nil {
		t.Fatalf("with -max-errors 1: %v, want exit 0", err)
	}
}

// TestWorkerConfigEngineFlags: the client engine's BlockingPoll and
// LockOSThread reach every worker (where a devices run's loops are): they
// survive workerConfig and the JSON line a worker reads its Config from.
func TestWorkerConfigEngineFlags(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := Config{Conns: 4, Procs: 2, BlockingPoll: on, LockOSThread: on}
		for i := range 2 {
			wc := workerConfig(cfg, i, 2)
			b, err := json.Marshal(wireMsg{Config: &wc})
			if err != nil {
				t.Fatal(err)
			}
			var m wireMsg
			if err := json.Unmarshal(b, &m); err != nil || m.Config == nil {
				t.Fatalf("%s: %v", b, err)
			}
			if m.Config.BlockingPoll != on || m.Config.LockOSThread != on {
				t.Fatalf("on=%v: worker %d got BlockingPoll %v LockOSThread %v from %s", on, i,
					m.Config.BlockingPoll, m.Config.LockOSThread, b)
			}
		}
	}
}

// TestRunProcsLockedLoops runs TestRunProcs's load from two workers
// whose loops block in epoll_wait and are locked to their threads.
func TestRunProcsLockedLoops(t *testing.T) {
	hs := startHTTP(t)
	cfg := quick(hs.url)
	cfg.Conns, cfg.Procs, cfg.Inflight = 10, 2, 2
	cfg.Duration = 800 * time.Millisecond
	cfg.BlockingPoll, cfg.LockOSThread = true, true
	cfg.WorkerCommand = testWorker("1")
	rep := run(t, cfg)
	if rep.Procs != 2 || rep.Connects != 10 || rep.Requests == 0 || rep.Requests != hs.requests.Load() || rep.TotalErrors() != 0 {
		t.Fatalf("procs %d connects %d requests %d (server %d) errors %v", rep.Procs, rep.Connects, rep.Requests,
			hs.requests.Load(), rep.Errors)
	}
}

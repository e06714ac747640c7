package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// serverSample is the server's resource use at one moment.
type serverSample struct {
	rss   int64   // bytes
	anon  int64   // RssAnon in bytes (heap, stacks), -1 when unknown
	cpu   float64 // user + system seconds
	conns int64   // warren_connections_active, -1 when unknown
}

// probe reads a server's resource use from /proc (pid) or from its admin
// endpoint's Prometheus metrics.
type probe struct {
	pid    int
	admin  string // base URL
	client *http.Client
}

func newProbe(pid int, admin string) *probe {
	if pid <= 0 && admin == "" {
		return nil
	}
	if admin != "" && !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	return &probe{pid: pid, admin: strings.TrimRight(admin, "/"), client: &http.Client{Timeout: 3 * time.Second}}
}

func (p *probe) source() string {
	if p.pid > 0 {
		return "proc"
	}
	return "admin"
}

// sample reads the server's RSS, CPU time and, from the admin endpoint,
// its active connections.
func (p *probe) sample(ctx context.Context) (serverSample, error) {
	s := serverSample{anon: -1, conns: -1}
	var errs []string
	if p.pid > 0 {
		rss, anon, cpu, err := readProc(p.pid)
		if err != nil {
			errs = append(errs, err.Error())
		}
		s.rss, s.anon, s.cpu = rss, anon, cpu
	}
	if p.admin != "" {
		m, err := p.metrics(ctx)
		if err != nil {
			errs = append(errs, err.Error())
		}
		if v, ok := m["warren_connections_active"]; ok {
			s.conns = int64(v)
		}
		if p.pid <= 0 {
			rss, okR := m["process_resident_memory_bytes"]
			cpu, okC := m["process_cpu_seconds_total"]
			if err == nil && (!okR || !okC) {
				errs = append(errs, p.admin+"/metrics lacks process_resident_memory_bytes or process_cpu_seconds_total")
			}
			s.rss, s.cpu = int64(rss), cpu
		}
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return s, nil
}

// readProc reads VmRSS and RssAnon from /proc/PID/status and utime+stime
// from /proc/PID/stat. anon is -1 when the kernel does not report RssAnon
// (before Linux 4.5).
func readProc(pid int) (rss, anon int64, cpu float64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, -1, 0, err
	}
	rss, anon = statusKB(status, "VmRSS:"), statusKB(status, "RssAnon:")
	if rss < 0 {
		return 0, -1, 0, fmt.Errorf("loadgen: no VmRSS in /proc/%d/status", pid)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return rss, anon, 0, err
	}
	cpu, err = parseStatCPU(stat)
	return rss, anon, cpu, err
}

// statusKB returns the value of the "KEY   N kB" line of a /proc/PID/status
// in bytes, or -1 when the line is missing or malformed.
func statusKB(status []byte, key string) int64 {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb * 1024
				}
			}
			return -1
		}
	}
	return -1
}

// parseStatCPU returns utime+stime in seconds from the contents of
// /proc/PID/stat. The command name, in parentheses, may hold spaces, so
// fields are counted from the last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: short /proc stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("loadgen: malformed /proc stat times")
	}
	return float64(u+s) / clockTicks, nil
}

// metrics fetches the admin endpoint's /metrics and returns the unlabelled
// samples of the metrics loadgen uses.
func (p *probe) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loadgen: %s/metrics: %s", p.admin, resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20), "process_resident_memory_bytes",
		"process_cpu_seconds_total", "warren_connections_active")
}

// parseMetrics reads Prometheus text exposition and returns the values of
// the named metrics; labelled samples of a name are summed.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ \t"); i >= 0 {
			name = line[:i]
		}
		if !want[name] {
			continue
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWorkersDieWithParent kills a -procs parent and checks that its
// workers go too.
func TestWorkersDieWithParent(t *testing.T) {
	bin := warrenBinary(t)
	hs := startHTTP(t)
	cmd := exec.Command(bin, "load", "-url", hs.url, "-conns", "4", "-procs", "2", "-hold", "60s", "-quiet")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var kids []int
	deadline := time.Now().Add(20 * time.Second)
	for len(kids) < 2 && time.Now().Before(deadline) {
		kids = children(cmd.Process.Pid)
		time.Sleep(20 * time.Millisecond)
	}
	if len(kids) < 2 {
		t.Fatalf("workers %v", kids)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		alive := 0
		for _, pid := range kids {
			if err := syscall.Kill(pid, 0); err == nil && !zombie(pid) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("workers %v outlived their parent", kids)
}

// children lists the pids whose parent is ppid.
func children(ppid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

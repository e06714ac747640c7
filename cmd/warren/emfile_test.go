//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDescriptorExhaustion runs the echo server with a tiny open-file
// limit and more clients than it can take: accepting backs off (no busy
// loop), the errors are logged once per burst, and the server recovers
// when descriptors free up.
func TestDescriptorExhaustion(t *testing.T) {
	bin := buildWarren(t)
	cmd := exec.Command("sh", "-c", "ulimit -n 40 && exec "+bin+" echo -proto tcp -addr 127.0.0.1:0 -admin '' -loops 1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var addr string
	for addr == "" {
		select {
		case l := <-lines:
			if m := listenRE.FindStringSubmatch(l); m != nil && strings.Contains(l, "listening") {
				addr = m[1]
			}
		case <-time.After(10 * time.Second):
			t.Fatal("server did not start")
		}
	}
	// 60 clients against ~30 free descriptors: the rest wait in the
	// backlog while the server backs off.
	var conns []net.Conn
	for i := 0; i < 60; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond)
	cpu0 := procCPU(t, cmd.Process.Pid)
	time.Sleep(2 * time.Second)
	if used := procCPU(t, cmd.Process.Pid) - cpu0; used > 500*time.Millisecond {
		t.Fatalf("server used %v CPU in 2 s while out of descriptors: busy loop", used)
	}
	for _, c := range conns {
		c.Close()
	}
	// Recovered: a new client is served.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write([]byte("back"))
			buf := make([]byte, 4)
			_, err = io.ReadFull(c, buf)
			c.Close()
			if err == nil && string(buf) == "back" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after descriptors freed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	warnings := 0
	for l := range lines {
		if strings.Contains(l, "out of descriptors") {
			warnings++
		}
	}
	if warnings == 0 || warnings > 10 {
		t.Fatalf("%d descriptor warnings logged; want at least one and one per burst (second)", warnings)
	}
}

// procCPU returns the user+system CPU time of a process.
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}

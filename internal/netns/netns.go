//go:build linux

// Package netns runs a test inside a network namespace of its own, where
// the loopback interface can be given addresses the host does not have
// (several IPv6 addresses of one /64, say). It is internal: only warren's
// own tests use it.
//
// The namespace is a user namespace's (unshare -rn), so it needs no
// privilege on the host and changes nothing there.
package netns

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const env = "WARREN_TEST_NETNS"

// Run reports whether the calling test is running inside its namespace.
// Called from outside, it runs the test binary again inside a new
// namespace (only this test, `-test.run=^Name$`) with loopback up and
// addrs (CIDR form, e.g. "2001:db8::1/64") added to it, fails t with the
// inner run's output if that run fails, and returns false: the caller
// returns. Called from inside, it returns true: the caller runs the test.
// The test is skipped when the machine cannot make such a namespace
// (no unshare or ip, or user namespaces disabled).
func Run(t *testing.T, addrs ...string) bool {
	t.Helper()
	if os.Getenv(env) == t.Name() {
		return true
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatal("netns.Run: call it from a top-level test, not a subtest")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on this machine: %v", tool, err)
		}
	}
	if out, err := exec.Command("unshare", "-rn", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a user and network namespace here: %v: %s", err, out)
	}
	script := "set -e; ip link set lo up"
	for _, a := range addrs {
		fam := "-4"
		if strings.Contains(a, ":") {
			fam = "-6"
		}
		script += "; ip " + fam + " addr add " + a + " dev lo nodad"
	}
	script += `; exec "$0" "$@"`
	cmd := exec.Command("unshare", "-rn", "sh", "-c", script, os.Args[0],
		"-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s in its network namespace: %v\n%s", t.Name(), err, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("%s did not pass in its network namespace:\n%s", t.Name(), out.String())
	}
	return false
}

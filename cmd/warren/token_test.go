package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/gateway"
)

// tokenRun runs `warren token args...` and returns its exit code and output.
func tokenRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runToken(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// tokenCheck authenticates the printed token with secret.
func tokenCheck(t *testing.T, out string, secret []byte) gateway.Identity {
	t.Helper()
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout %q: want the token and one newline", out)
	}
	id, err := gateway.NewHMACAuth(secret).Authenticate(strings.TrimSuffix(out, "\n"), time.Now())
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return id
}

func TestRunTokenDataDir(t *testing.T) {
	t.Setenv("WARREN_JWT_SECRET", "")
	dir := filepath.Join(t.TempDir(), "warren-data")

	code, out, errOut := tokenRun(t, "-device", "dev-1", "-data", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "generated a new secret") {
		t.Errorf("stderr %q does not mention the new secret", errOut)
	}
	// The server's function finds the same secret.
	secret, created, err := gateway.LoadOrCreateSecret(dir)
	if err != nil || created {
		t.Fatalf("LoadOrCreateSecret: created=%v err=%v", created, err)
	}
	before := time.Now()
	id := tokenCheck(t, out, secret)
	if id.Device != "dev-1" || id.Role != gateway.RoleDevice {
		t.Fatalf("identity %+v", id)
	}
	if d := id.Expires.Sub(before); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("expires in %v, want the 24h default", d)
	}

	// Second run reuses the secret quietly.
	code, out, errOut = tokenRun(t, "-device", "svc_1", "-role", "service", "-ttl", "0", "-data", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	id = tokenCheck(t, out, secret)
	if id.Device != "svc_1" || id.Role != gateway.RoleService || !id.Expires.IsZero() {
		t.Fatalf("identity %+v, want service without expiry", id)
	}

	code, out, _ = tokenRun(t, "-device", "dev-2", "-ttl", "90m", "-data", dir)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	tok := strings.TrimSpace(out)
	if _, err := gateway.NewHMACAuth(secret).Authenticate(tok, time.Now().Add(91*time.Minute)); !errors.Is(err, gateway.ErrTokenExpired) {
		t.Fatalf("after -ttl: err = %v, want ErrTokenExpired", err)
	}
}

func TestRunTokenSecretFlagAndEnv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "unused")
	flagSecret := []byte("flag-secret-flag-secret-flag-secret")
	envSecret := []byte("env-secret-env-secret-env-secret-env")
	t.Setenv("WARREN_JWT_SECRET", string(envSecret))

	code, out, errOut := tokenRun(t, "-device", "dev-1", "-data", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	tokenCheck(t, out, envSecret)

	code, out, errOut = tokenRun(t, "-device", "dev-1", "-data", dir, "-jwt-secret", string(flagSecret))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	tokenCheck(t, out, flagSecret)

	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory touched although a secret was given: %v", err)
	}

	// -h lists the flags without printing the secret from the environment.
	code, _, errOut = tokenRun(t, "-h")
	if code != 0 || !strings.Contains(errOut, "-jwt-secret") || strings.Contains(errOut, string(envSecret)) {
		t.Fatalf("-h: exit %d, output %q", code, errOut)
	}

	code, out, errOut = tokenRun(t, "-device", "dev-1", "-jwt-secret", "short")
	if code != 0 || !strings.Contains(errOut, "warning") {
		t.Fatalf("short secret: exit %d, stderr %q", code, errOut)
	}
	tokenCheck(t, out, []byte("short"))
}

func TestRunTokenBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"-device", ""},
		{"-device", "a/b"},
		{"-device", strings.Repeat("x", 129)},
		{"-device", "dev-1", "-role", "admin"},
		{"-device", "dev-1", "-ttl", "-1h"},
		{"-device", "dev-1", "-ttl", "soon"},
		{"-device", "dev-1", "extra"},
		{"-nope"},
	} {
		code, out, errOut := tokenRun(t, append(args, "-data", dir)...)
		if code != 2 || out != "" || errOut == "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 with a message", args, code, out, errOut)
		}
	}
}

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/warrenhq/warren/gateway"
)

// runToken is `warren token`: it prints a device token signed with the
// gateway's HS256 secret — -jwt-secret or $WARREN_JWT_SECRET when set,
// otherwise the one `warren serve` keeps under -data, created here if
// absent so that the first run on a fresh machine works end to end.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	device := fs.String("device", "", "device id the token is for, [A-Za-z0-9_-]{1,128} (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime; 0: no expiry")
	role := fs.String("role", string(gateway.RoleDevice), "role claim: device or service")
	dataDir := fs.String("data", "./warren-data", "data directory holding the gateway's generated secret (created if absent)")
	// The default is read after parsing so that -h never prints the secret.
	secret := fs.String("jwt-secret", "", "HS256 secret to sign with instead of the data directory's (default $WARREN_JWT_SECRET)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "warren token: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *device == "" {
		fmt.Fprintln(stderr, "warren token: -device is required")
		return 2
	}
	if !gateway.ValidDeviceID(*device) {
		fmt.Fprintf(stderr, "warren token: bad -device %q: want 1 to %d of [A-Za-z0-9_-]\n", *device, gateway.MaxDeviceIDLen)
		return 2
	}
	r := gateway.Role(*role)
	if r != gateway.RoleDevice && r != gateway.RoleService {
		fmt.Fprintf(stderr, "warren token: bad -role %q: want device or service\n", *role)
		return 2
	}
	if *ttl < 0 {
		fmt.Fprintf(stderr, "warren token: bad -ttl %v: want 0 (no expiry) or more\n", *ttl)
		return 2
	}

	key := []byte(*secret)
	if len(key) == 0 {
		key = []byte(os.Getenv("WARREN_JWT_SECRET"))
	}
	if len(key) == 0 {
		var created bool
		var err error
		key, created, err = gateway.LoadOrCreateSecret(*dataDir)
		if err != nil {
			fmt.Fprintf(stderr, "warren token: %v\n", err)
			return 1
		}
		if created {
			fmt.Fprintf(stderr, "warren token: generated a new secret in %s; run warren serve with -data %s to accept this token\n",
				filepath.Join(*dataDir, gateway.SecretFile), *dataDir)
		}
	} else if len(key) < gateway.MinSecretLen {
		fmt.Fprintf(stderr, "warren token: warning: the secret is %d bytes; use at least %d\n", len(key), gateway.MinSecretLen)
	}

	tok, err := gateway.IssueToken(key, *device, r, *ttl, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "warren token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

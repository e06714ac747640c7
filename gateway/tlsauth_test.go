package gateway

import (
	"errors"
	"testing"
	"time"
)

// TestCertIdentityRules: the certificate/token rule of docs/gateway.md,
// case by case, with the counters it keeps.
func TestCertIdentityRules(t *testing.T) {
	ca := &certAuth{log: quietLog()}
	auth := NewHMACAuth(testSecret)
	now := time.Now()
	svc, err := IssueToken(testSecret, "svc", RoleService, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	certEnd := now.Add(30 * time.Minute).Truncate(time.Second) // before the tokens' hour
	expired, _ := IssueToken(testSecret, "dev-1", RoleDevice, time.Second, now.Add(-time.Hour))
	cases := []struct {
		name, cert, tok string
		device, reason  string
		tokErr          bool
	}{
		{"certificate only", "dev-1", "", "dev-1", "", false},
		{"same device's token", "dev-1", token(t, "dev-1"), "dev-1", "", false},
		{"another device's token", "dev-1", token(t, "dev-2"), "", CertMismatch, false},
		{"service token", "dev-1", svc, "", CertMismatch, false},
		{"bad id", "not a device!", "", "", CertBadID, false},
		{"too long an id", string(make([]byte, 129)), "", "", CertBadID, false},
		{"bad token", "dev-1", "garbage", "", "auth_failed", true},
		{"expired token", "dev-1", expired, "", "token_expired", true},
	}
	for _, tc := range cases {
		ident, reason, tokErr, err := ca.identityFor(auth, clientCert{id: tc.cert, notAfter: certEnd}, tc.tok, now)
		if ident.Device != tc.device || reason != tc.reason || tokErr != tc.tokErr || (err == nil) != (tc.reason == "") {
			t.Errorf("%s: %+v %q tokErr=%v err=%v; want device %q reason %q", tc.name, ident, reason, tokErr, err, tc.device, tc.reason)
		}
		if err == nil && (ident.Role != RoleDevice || !ident.Expires.Equal(certEnd)) {
			t.Errorf("%s: role %v, expires %v; want device until the certificate's end %v", tc.name, ident.Role, ident.Expires, certEnd)
		}
		if tc.reason == CertBadID && !errors.Is(err, ErrBadDeviceID) {
			t.Errorf("%s: %v is not ErrBadDeviceID", tc.name, err)
		}
	}
	if a, tt, b, m := ca.accepted.Load(), ca.tokenToo.Load(), ca.badID.Load(), ca.mismatch.Load(); a != 2 || tt != 1 || b != 2 || m != 2 {
		t.Errorf("counters accepted %d token_too %d bad_id %d mismatch %d; want 2 1 2 2", a, tt, b, m)
	}
}

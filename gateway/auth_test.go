package gateway

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// authNow is the fixed time the tests authenticate at.
var authNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var authSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// authSign signs claims with method and key.
func authSign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// authClaims returns claims for device with exp an hour after authNow.
func authClaims(device string) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": device,
		"iat": authNow.Unix(),
		"exp": authNow.Add(time.Hour).Unix(),
	}
}

// authWith returns authClaims(device) changed by kv pairs; a nil value
// deletes the claim.
func authWith(device string, kv ...any) jwt.MapClaims {
	c := authClaims(device)
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(c, k)
		} else {
			c[k] = kv[i+1]
		}
	}
	return c
}

type authCase struct {
	name    string
	token   string
	now     time.Time // zero: authNow
	want    Identity
	wantErr error
}

func authRun(t *testing.T, a Authenticator, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = authNow
			}
			id, err := a.Authenticate(tc.token, now)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if id != (Identity{}) {
					t.Errorf("identity %+v returned with error", id)
				}
				if !strings.HasPrefix(err.Error(), "gateway: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				wantReason := "auth_failed"
				if tc.wantErr == ErrTokenExpired {
					wantReason = "token_expired"
				}
				if r := AuthReason(err); r != wantReason {
					t.Errorf("AuthReason = %q, want %q", r, wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !id.Expires.Equal(tc.want.Expires) || id.Device != tc.want.Device || id.Role != tc.want.Role {
				t.Fatalf("identity = %+v, want %+v", id, tc.want)
			}
		})
	}
}

func TestAuthHMAC(t *testing.T) {
	hs := func(c jwt.Claims) string { return authSign(t, jwt.SigningMethodHS256, authSecret, c) }
	exp := authNow.Add(time.Hour)
	valid := hs(authClaims("dev-1"))
	none := authSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, authClaims("dev-1"))
	parts := strings.Split(valid, ".")
	noneInput := strings.TrimSuffix(none, ".")
	noneSig, err := jwt.SigningMethodHS256.Sign(noneInput, authSecret)
	if err != nil {
		t.Fatal(err)
	}
	noneSigned := noneInput + "." + base64.RawURLEncoding.EncodeToString(noneSig)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"dev-2","exp":`+strconv.FormatInt(exp.Unix(), 10)+`}`)) + "." + parts[2]

	authRun(t, NewHMACAuth(authSecret), []authCase{
		{name: "valid", token: valid, want: Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}},
		{name: "role device explicit", token: hs(authWith("dev-1", "warren_role", "device")), want: Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}},
		{name: "role service", token: hs(authWith("svc_billing", "warren_role", "service")), want: Identity{Device: "svc_billing", Role: RoleService, Expires: exp}},
		{name: "no exp", token: hs(authWith("dev-1", "exp", nil)), want: Identity{Device: "dev-1", Role: RoleDevice}},
		{name: "no iat", token: hs(authWith("dev-1", "iat", nil)), want: Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}},
		{name: "max length id", token: hs(authClaims(strings.Repeat("A", 128))), want: Identity{Device: strings.Repeat("A", 128), Role: RoleDevice, Expires: exp}},
		{name: "exp one second ahead", token: valid, now: exp.Add(-time.Second), want: Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}},
		{name: "nbf within leeway", token: hs(authWith("dev-1", "nbf", authNow.Add(10*time.Second).Unix())), want: Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}},
		{name: "iat within leeway", token: hs(authWith("dev-1", "iat", authNow.Add(10*time.Second).Unix())), want: Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}},
		{name: "nbf past", token: hs(authWith("dev-1", "nbf", authNow.Add(-time.Minute).Unix())), want: Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}},

		{name: "empty", token: "", wantErr: ErrTokenMissing},
		{name: "garbage", token: "not-a-jwt", wantErr: ErrTokenInvalid},
		{name: "too long", token: strings.Repeat("a", authMaxTokenLen+1), wantErr: ErrTokenInvalid},
		{name: "wrong secret", token: authSign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), authClaims("dev-1")), wantErr: ErrTokenInvalid},
		{name: "alg none", token: none, wantErr: ErrTokenInvalid},
		{name: "alg none with HS256 signature", token: noneSigned, wantErr: ErrTokenInvalid},
		{name: "HS512 same secret", token: authSign(t, jwt.SigningMethodHS512, authSecret, authClaims("dev-1")), wantErr: ErrTokenInvalid},
		{name: "tampered payload", token: tampered, wantErr: ErrTokenInvalid},
		{name: "expired", token: valid, now: exp.Add(time.Second), wantErr: ErrTokenExpired},
		{name: "expired at exp", token: valid, now: exp, wantErr: ErrTokenExpired},
		{name: "expired past leeway", token: valid, now: exp.Add(time.Hour), wantErr: ErrTokenExpired},
		{name: "nbf in future", token: hs(authWith("dev-1", "nbf", authNow.Add(time.Minute).Unix())), wantErr: ErrTokenInvalid},
		{name: "iat in future", token: hs(authWith("dev-1", "iat", authNow.Add(time.Minute).Unix())), wantErr: ErrTokenInvalid},
		{name: "exp not a number", token: hs(authWith("dev-1", "exp", "tomorrow")), wantErr: ErrTokenInvalid},
		{name: "no sub", token: hs(authWith("dev-1", "sub", nil)), wantErr: ErrBadDeviceID},
		{name: "empty sub", token: hs(authClaims("")), wantErr: ErrBadDeviceID},
		{name: "sub with slash", token: hs(authClaims("a/b")), wantErr: ErrBadDeviceID},
		{name: "sub with dot", token: hs(authClaims("a.b")), wantErr: ErrBadDeviceID},
		{name: "sub with wildcard", token: hs(authClaims("dev>")), wantErr: ErrBadDeviceID},
		{name: "sub too long", token: hs(authClaims(strings.Repeat("A", 129))), wantErr: ErrBadDeviceID},
		{name: "sub not a string", token: hs(authWith("dev-1", "sub", 42)), wantErr: ErrTokenInvalid},
		{name: "bad role", token: hs(authWith("dev-1", "warren_role", "admin")), wantErr: ErrBadRole},
		{name: "role wrong case", token: hs(authWith("dev-1", "warren_role", "Service")), wantErr: ErrBadRole},
	})
}

func TestAuthHMACEmptySecret(t *testing.T) {
	// jwt accepts an empty HMAC key; the authenticator must not.
	tok := authSign(t, jwt.SigningMethodHS256, []byte{}, authClaims("dev-1"))
	authRun(t, NewHMACAuth(nil), []authCase{
		{name: "signed with empty key", token: tok, wantErr: ErrTokenInvalid},
		{name: "empty", token: "", wantErr: ErrTokenMissing},
	})
}

func TestAuthHMACCopiesSecret(t *testing.T) {
	secret := append([]byte(nil), authSecret...)
	a := NewHMACAuth(secret)
	secret[0] ^= 0xff
	tok := authSign(t, jwt.SigningMethodHS256, authSecret, authClaims("dev-1"))
	if _, err := a.Authenticate(tok, authNow); err != nil {
		t.Fatalf("secret changed under the authenticator: %v", err)
	}
}

// authPEM encodes der as one PEM block.
func authPEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func authPKIX(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return authPEM("PUBLIC KEY", der)
}

func authCert(t *testing.T, pub any, priv crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "warren token signer"},
		NotBefore:    authNow.Add(-time.Hour),
		NotAfter:     authNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return authPEM("CERTIFICATE", der)
}

func TestAuthPublicKey(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	exp := authNow.Add(time.Hour)
	ok := func(device string, role Role) Identity { return Identity{Device: device, Role: role, Expires: exp} }

	rsPEM := authPKIX(t, &rsaKey.PublicKey)
	esPEM := authPKIX(t, &ecKey.PublicKey)
	edPEM := authPKIX(t, edPub)
	rsTok := authSign(t, jwt.SigningMethodRS256, rsaKey, authClaims("dev-rsa"))
	esTok := authSign(t, jwt.SigningMethodES256, ecKey, authClaims("dev-ec"))
	edTok := authSign(t, jwt.SigningMethodEdDSA, edKey, authClaims("dev-ed"))

	tests := []struct {
		name  string
		pem   []byte
		str   string
		cases []authCase
	}{
		{"RS256", rsPEM, "RS256 public key", []authCase{
			{name: "valid", token: rsTok, want: ok("dev-rsa", RoleDevice)},
			{name: "service", token: authSign(t, jwt.SigningMethodRS256, rsaKey, authWith("svc", "warren_role", "service")), want: ok("svc", RoleService)},
			{name: "PS256 same key", token: authSign(t, jwt.SigningMethodPS256, rsaKey, authClaims("dev-rsa")), wantErr: ErrTokenInvalid},
			{name: "RS512 same key", token: authSign(t, jwt.SigningMethodRS512, rsaKey, authClaims("dev-rsa")), wantErr: ErrTokenInvalid},
			// Algorithm confusion: HS256 keyed with the public key's PEM.
			{name: "HS256 with public key", token: authSign(t, jwt.SigningMethodHS256, rsPEM, authClaims("dev-rsa")), wantErr: ErrTokenInvalid},
			{name: "other alg", token: esTok, wantErr: ErrTokenInvalid},
			{name: "alg none", token: authSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, authClaims("dev-rsa")), wantErr: ErrTokenInvalid},
			{name: "expired", token: rsTok, now: exp, wantErr: ErrTokenExpired},
			{name: "bad sub", token: authSign(t, jwt.SigningMethodRS256, rsaKey, authClaims("dev rsa")), wantErr: ErrBadDeviceID},
		}},
		{"RSA PKCS1", authPEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), "RS256 public key", []authCase{
			{name: "valid", token: rsTok, want: ok("dev-rsa", RoleDevice)},
		}},
		{"RSA certificate", authCert(t, &rsaKey.PublicKey, rsaKey), "RS256 public key", []authCase{
			{name: "valid", token: rsTok, want: ok("dev-rsa", RoleDevice)},
		}},
		{"ES256", esPEM, "ES256 public key", []authCase{
			{name: "valid", token: esTok, want: ok("dev-ec", RoleDevice)},
			{name: "other key", token: authSign(t, jwt.SigningMethodES256, otherEC, authClaims("dev-ec")), wantErr: ErrTokenInvalid},
			{name: "HS256 with public key", token: authSign(t, jwt.SigningMethodHS256, esPEM, authClaims("dev-ec")), wantErr: ErrTokenInvalid},
			{name: "nbf in future", token: authSign(t, jwt.SigningMethodES256, ecKey, authWith("dev-ec", "nbf", authNow.Add(time.Hour).Unix())), wantErr: ErrTokenInvalid},
			{name: "bad role", token: authSign(t, jwt.SigningMethodES256, ecKey, authWith("dev-ec", "warren_role", "root")), wantErr: ErrBadRole},
		}},
		{"ES256 certificate after text", append([]byte("signer cert\n"), authCert(t, &ecKey.PublicKey, ecKey)...), "ES256 public key", []authCase{
			{name: "valid", token: esTok, want: ok("dev-ec", RoleDevice)},
		}},
		{"EdDSA", edPEM, "EdDSA public key", []authCase{
			{name: "valid", token: edTok, want: ok("dev-ed", RoleDevice)},
			{name: "other alg", token: rsTok, wantErr: ErrTokenInvalid},
			{name: "expired", token: edTok, now: exp.Add(time.Minute), wantErr: ErrTokenExpired},
		}},
		{"EdDSA certificate", authCert(t, edPub, edKey), "EdDSA public key", []authCase{
			{name: "valid", token: edTok, want: ok("dev-ed", RoleDevice)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewPublicKeyAuth(tt.pem)
			if err != nil {
				t.Fatalf("NewPublicKeyAuth: %v", err)
			}
			if s := a.(interface{ String() string }).String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			authRun(t, a, tt.cases)
		})
	}
}

func TestAuthPublicKeyRejects(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"empty", nil, "no \"PUBLIC KEY\""},
		{"not PEM", []byte("hello"), "no \"PUBLIC KEY\""},
		{"private key", authPEM("PRIVATE KEY", privDER), "give the public key"},
		{"small RSA", authPKIX(t, &small.PublicKey), "1024 bits"},
		{"P-384", authPKIX(t, &p384.PublicKey), "P-384"},
		{"corrupt", authPEM("PUBLIC KEY", []byte{1, 2, 3}), "public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewPublicKeyAuth(tc.pem)
			if err == nil {
				t.Fatalf("accepted: %v", a)
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNoAuth(t *testing.T) {
	a := NoAuth()
	authRun(t, a, []authCase{
		{name: "id", token: "dev-1", want: Identity{Device: "dev-1", Role: RoleDevice}},
		{name: "any time", token: "Dev_2", now: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), want: Identity{Device: "Dev_2", Role: RoleDevice}},
		{name: "empty", token: "", wantErr: ErrTokenMissing},
		{name: "bad id", token: "dev.1", wantErr: ErrBadDeviceID},
		{name: "a JWT is not an id", token: authSign(t, jwt.SigningMethodHS256, authSecret, authClaims("dev-1")), wantErr: ErrBadDeviceID},
	})
	if s := a.(interface{ String() string }).String(); s != "none" {
		t.Errorf("String() = %q", s)
	}
}

func TestAuthValidDeviceID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "Z": true, "0": true, "_": true, "-": true,
		"dev-1_A": true, strings.Repeat("x", 128): true,
		"": false, strings.Repeat("x", 129): false,
		"a b": false, "a.b": false, "a/b": false, "a*": false, "a>": false,
		"é": false, "a\x00": false, "a\n": false, "+": false,
	} {
		if got := ValidDeviceID(id); got != want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", id, got, want)
		}
	}
	// Every byte, alone.
	for c := 0; c < 256; c++ {
		want := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
		if got := ValidDeviceID(string([]byte{byte(c)})); got != want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", []byte{byte(c)}, got, want)
		}
	}
}

func TestAuthReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrTokenExpired, "token_expired"},
		{authWrap(ErrTokenExpired), "token_expired"},
		{ErrTokenMissing, "auth_failed"},
		{ErrTokenInvalid, "auth_failed"},
		{authWrap(ErrBadDeviceID), "auth_failed"},
		{ErrBadRole, "auth_failed"},
		{errors.New("other"), "auth_failed"},
	} {
		if got := AuthReason(tc.err); got != tc.want {
			t.Errorf("AuthReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func authWrap(err error) error { return errors.Join(errors.New("context"), err) }

func TestAuthIdentityExpired(t *testing.T) {
	id := Identity{Device: "d", Role: RoleDevice}
	if id.Expired(authNow) {
		t.Error("no expiry reported expired")
	}
	id.Expires = authNow
	if !id.Expired(authNow) || id.Expired(authNow.Add(-time.Nanosecond)) {
		t.Error("expiry not exact")
	}
}

func TestIssueToken(t *testing.T) {
	a := NewHMACAuth(authSecret)
	for _, tc := range []struct {
		name   string
		device string
		role   Role
		ttl    time.Duration
		want   Identity
	}{
		{"device", "dev-1", RoleDevice, time.Hour, Identity{Device: "dev-1", Role: RoleDevice, Expires: authNow.Add(time.Hour)}},
		{"default role", "dev-1", "", 24 * time.Hour, Identity{Device: "dev-1", Role: RoleDevice, Expires: authNow.Add(24 * time.Hour)}},
		{"service", "billing", RoleService, time.Minute, Identity{Device: "billing", Role: RoleService, Expires: authNow.Add(time.Minute)}},
		{"no expiry", "dev-1", RoleDevice, 0, Identity{Device: "dev-1", Role: RoleDevice}},
		{"negative ttl", "dev-1", RoleDevice, -time.Hour, Identity{Device: "dev-1", Role: RoleDevice}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := IssueToken(authSecret, tc.device, tc.role, tc.ttl, authNow)
			if err != nil {
				t.Fatal(err)
			}
			id, err := a.Authenticate(tok, authNow)
			if err != nil {
				t.Fatal(err)
			}
			if id.Device != tc.want.Device || id.Role != tc.want.Role || !id.Expires.Equal(tc.want.Expires) {
				t.Fatalf("identity = %+v, want %+v", id, tc.want)
			}
			if tc.ttl > 0 {
				if _, err := a.Authenticate(tok, authNow.Add(tc.ttl)); !errors.Is(err, ErrTokenExpired) {
					t.Fatalf("at exp: err = %v, want ErrTokenExpired", err)
				}
			}
			if _, err := NewHMACAuth([]byte("another-secret-another-secret-xx")).Authenticate(tok, authNow); !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("other secret: err = %v, want ErrTokenInvalid", err)
			}
		})
	}

	// Sub-second times round down, as NumericDate does.
	tok, err := IssueToken(authSecret, "dev-1", RoleDevice, time.Hour, authNow.Add(400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Authenticate(tok, authNow); err != nil || !id.Expires.Equal(authNow.Add(time.Hour)) {
		t.Fatalf("rounded: %+v, %v", id, err)
	}

	for _, tc := range []struct {
		name    string
		secret  []byte
		device  string
		role    Role
		wantErr error
	}{
		{"empty secret", nil, "dev-1", RoleDevice, nil},
		{"bad device", authSecret, "dev/1", RoleDevice, ErrBadDeviceID},
		{"empty device", authSecret, "", RoleDevice, ErrBadDeviceID},
		{"bad role", authSecret, "dev-1", "admin", ErrBadRole},
	} {
		_, err := IssueToken(tc.secret, tc.device, tc.role, time.Hour, authNow)
		if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"BeArEr abc", "abc", true},
		{"Bearer    abc  ", "abc", true},
		{"  Bearer abc\t", "abc", true},
		{"Bearer a-b_c~d+e/f=", "a-b_c~d+e/f=", true},
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Bearerabc", "", false},
		{"Bearer\tabc", "", false},
		{"Basic abc", "", false},
		{"Bearex abc", "", false},
		{"Token abc", "", false},
		{"Bearer abc def", "", false},
		{"Bearer abc\x00", "", false},
		{"Bearer abc\x7f", "", false},
	} {
		got, ok := BearerToken([]byte(tc.in))
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	h := []byte("Bearer tok")
	got, _ := BearerToken(h)
	if &got[0] != &h[7] {
		t.Error("result does not alias the header")
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s1, created, err := LoadOrCreateSecret(dir)
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	if len(s1) != 64 {
		t.Fatalf("secret is %d bytes, want 64 hex digits", len(s1))
	}
	if _, err := hex.DecodeString(string(s1)); err != nil {
		t.Fatalf("secret %q is not hex: %v", s1, err)
	}
	path := filepath.Join(dir, SecretFile)
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("file mode %o, want 600", m)
		}
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if m := di.Mode().Perm(); m&0o077 != 0 {
			t.Errorf("dir mode %o, want 700", m)
		}
	}
	authNoTemps(t, dir)

	s2, created, err := LoadOrCreateSecret(dir)
	if err != nil || created || !bytes.Equal(s1, s2) {
		t.Fatalf("reuse: %q created=%v err=%v, want %q", s2, created, err, s1)
	}

	// The secret is the file's trimmed text, usable as -jwt-secret.
	tok, err := IssueToken(s1, "dev-1", RoleDevice, time.Hour, authNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewHMACAuth(s2).Authenticate(tok, authNow); err != nil {
		t.Fatal(err)
	}

	// An operator's own secret of sufficient length is kept as written.
	own := t.TempDir()
	if err := os.WriteFile(filepath.Join(own, SecretFile), []byte("  my-own-secret-that-is-long-enough-for-hs256\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s3, created, err := LoadOrCreateSecret(own)
	if err != nil || created || string(s3) != "my-own-secret-that-is-long-enough-for-hs256" {
		t.Fatalf("own secret: %q created=%v err=%v", s3, created, err)
	}

	for name, content := range map[string]string{
		"short": "too-short\n",
		"empty": "",
		"huge":  strings.Repeat("a", authMaxSecretFile+1),
	} {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, SecretFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, _, err := LoadOrCreateSecret(d); err == nil || !strings.HasPrefix(err.Error(), "gateway: ") {
			t.Errorf("%s file: secret %q, err %v; want an error", name, s, err)
		}
	}

	if _, _, err := LoadOrCreateSecret(""); err == nil {
		t.Error("empty data directory accepted")
	}
	// A data "directory" that is a file.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSecret(f); err == nil {
		t.Error("file as data directory accepted")
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	const starters = 8
	for round := 0; round < 10; round++ {
		dir := filepath.Join(t.TempDir(), "data")
		var (
			wg       sync.WaitGroup
			start    = make(chan struct{})
			secrets  [starters][]byte
			created  [starters]bool
			errs     [starters]error
			nCreated int
		)
		for i := range starters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				secrets[i], created[i], errs[i] = LoadOrCreateSecret(dir)
			}()
		}
		close(start)
		wg.Wait()
		for i := range starters {
			if errs[i] != nil {
				t.Fatalf("round %d starter %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(secrets[i], secrets[0]) {
				t.Fatalf("round %d: starters got different secrets %q and %q", round, secrets[0], secrets[i])
			}
			if created[i] {
				nCreated++
			}
		}
		if nCreated != 1 {
			t.Fatalf("round %d: %d starters report creating the secret, want 1", round, nCreated)
		}
		authNoTemps(t, dir)
	}
}

// authNoTemps fails if dir holds anything but the secret.
func authNoTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != SecretFile {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("data dir holds %v, want only %s", names, SecretFile)
	}
}

// TestAuthHMACFastPath: the HS256 fast path accepts exactly what the
// parser's path accepts, with the same Identity, and is taken for the
// tokens warren issues and the usual headers; everything else is left to
// the parser (and so answers with its errors, TestAuthHMAC).
func TestAuthHMACFastPath(t *testing.T) {
	a := NewHMACAuth(authSecret).(*hmacAuth)
	hs := func(c jwt.Claims) string { return authSign(t, jwt.SigningMethodHS256, authSecret, c) }
	exp := authNow.Add(time.Hour)
	issued, err := IssueToken(authSecret, "dev-1", "", time.Hour, authNow)
	if err != nil {
		t.Fatal(err)
	}
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	withHeader := func(tok, header string) string {
		parts := strings.Split(tok, ".")
		in := seg(header) + "." + parts[1]
		sig, err := jwt.SigningMethodHS256.Sign(in, authSecret)
		if err != nil {
			t.Fatal(err)
		}
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	valid := hs(authClaims("dev-1"))
	fast := []string{
		valid, issued,
		hs(authWith("dev-1", "warren_role", "service")),
		hs(authWith("dev-1", "exp", nil)),
		hs(authWith("dev-1", "iat", nil, "nbf", authNow.Add(10*time.Second).Unix())),
		withHeader(valid, `{"typ":"JWT","alg":"HS256"}`),
		withHeader(valid, `{"alg":"HS256"}`),
	}
	for i, tok := range fast {
		if _, ok := a.fast(tok, authNow); !ok {
			t.Errorf("token %d: not taken by the fast path", i)
		}
	}
	tokens := append(fast,
		withHeader(valid, `{"alg":"HS256","typ":"JWT","kid":"k1"}`),
		withHeader(valid, `{"ALG":"HS256"}`),
		withHeader(valid, `{"alg":"HS384"}`),
		valid+".", valid[:len(valid)-1], valid+"A", strings.Replace(valid, ".", "..", 1),
		hs(authWith("dev-1", "exp", "tomorrow")),
		hs(authWith("dev-1", "nbf", authNow.Add(time.Minute).Unix())),
		hs(authWith("dev-1", "iat", authNow.Add(31*time.Second).Unix())),
		hs(authWith("dev-1", "exp", authNow.Unix())),
		hs(authWith("dev-1", "exp", float64(authNow.Unix())+0.5)),
		hs(authWith("dev-1", "exp", strconv.FormatInt(exp.Unix(), 10))), // a quoted number
		hs(authWith("dev-1", "exp", (*int)(nil))),                       // null
		hs(authWith("dev-1", "exp", json.Number("1e999"))),
		hs(authWith("dev-1", "iat", json.Number("1.7e9"), "nbf", true)),
		hs(authWith("dev-1", "EXP", authNow.Unix())), // the decoder's case-insensitive names
		hs(authWith("dev-1", "sub", 42)), hs(authClaims("a/b")), hs(authWith("dev-1", "warren_role", "admin")),
		authSign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), authClaims("dev-1")),
		authSign(t, jwt.SigningMethodHS512, authSecret, authClaims("dev-1")),
		strings.Split(valid, ".")[0]+"."+seg(`{"sub":"dev-1"} trailing`)+"."+strings.Split(valid, ".")[2],
	)
	for i, tok := range tokens {
		for _, now := range []time.Time{authNow, exp.Add(-time.Second), exp, exp.Add(29 * time.Second), authNow.Add(-29 * time.Second), authNow.Add(-31 * time.Second)} {
			fid, fok := a.fast(tok, now)
			pid, perr := authVerify(tok, now, "HS256", authSecret)
			if fok && (perr != nil || fid != pid) {
				t.Errorf("token %d at %s: fast path %+v, parser %+v, %v", i, now, fid, pid, perr)
			}
		}
	}
	// The fast path's garbage against the parser's, per token.
	fastAllocs := testing.AllocsPerRun(200, func() { a.fast(valid, authNow) })
	parserAllocs := testing.AllocsPerRun(200, func() { authVerify(valid, authNow, "HS256", authSecret) })
	t.Logf("allocations per token: fast path %.0f, parser %.0f", fastAllocs, parserAllocs)
	if fastAllocs*2 > parserAllocs {
		t.Errorf("fast path: %.0f allocations per token, the parser %.0f: want at most half", fastAllocs, parserAllocs)
	}
}

// BenchmarkAuthHMAC is one HS256 check by the fast path and by the
// parser's path.
func BenchmarkAuthHMAC(b *testing.B) {
	tok, err := IssueToken(authSecret, "dev-1", "", time.Hour, authNow)
	if err != nil {
		b.Fatal(err)
	}
	a := NewHMACAuth(authSecret)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Authenticate(tok, authNow); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parser", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := authVerify(tok, authNow, "HS256", authSecret); err != nil {
				b.Fatal(err)
			}
		}
	})
}

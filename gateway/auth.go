package gateway

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what an authenticated identity may do. It travels in a token's
// warren_role claim; a token without the claim has RoleDevice.
type Role string

const (
	// RoleDevice is a device: it may act only as itself (publish its own
	// telemetry, answer its own commands).
	RoleDevice Role = "device"
	// RoleService is a backend service acting for the platform rather than
	// for one device.
	RoleService Role = "service"
)

// String returns the role's claim value, used as-is in logs.
func (r Role) String() string { return string(r) }

// valid reports whether r is a role warren knows.
func (r Role) valid() bool { return r == RoleDevice || r == RoleService }

// Identity is who a connection authenticated as.
type Identity struct {
	// Device is the device id: the token's sub claim, or the id itself
	// under NoAuth. It always satisfies ValidDeviceID.
	Device string
	// Role is RoleDevice or RoleService.
	Role Role
	// Expires is the token's exp claim. The zero Time means the token
	// does not expire. The gateway closes the connection with reason
	// token_expired when it passes (see Expired).
	Expires time.Time
}

// Expired reports whether the identity's token has expired at now: at and
// after Expires, never if Expires is zero. It is the check the gateway
// repeats while the device is connected.
func (id Identity) Expired(now time.Time) bool {
	return !id.Expires.IsZero() && !now.Before(id.Expires)
}

// Authenticator turns the token a client presents into an Identity.
// Implementations are safe for concurrent use. Time is an argument so
// that callers read it from their own clock and tests use fixed times.
//
// Errors wrap one of ErrTokenMissing, ErrTokenInvalid, ErrTokenExpired,
// ErrBadDeviceID or ErrBadRole; AuthReason maps them to the close and
// metric reason.
type Authenticator interface {
	Authenticate(token string, now time.Time) (Identity, error)
}

// Errors returned by Authenticate and IssueToken, wrapped with detail;
// test them with errors.Is.
var (
	ErrTokenMissing = errors.New("gateway: token missing")
	ErrTokenInvalid = errors.New("gateway: token invalid")
	ErrTokenExpired = errors.New("gateway: token expired")
	ErrBadDeviceID  = errors.New("gateway: bad device id")
	ErrBadRole      = errors.New("gateway: bad role")
)

// AuthReason returns the close and metric reason for an authentication
// error: "token_expired" for ErrTokenExpired, "auth_failed" for any other
// error, and "" for nil.
func AuthReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTokenExpired):
		return "token_expired"
	default:
		return "auth_failed"
	}
}

// MaxDeviceIDLen is the longest device id, in bytes.
const MaxDeviceIDLen = 128

// ValidDeviceID reports whether id is a valid device id: 1 to
// MaxDeviceIDLen bytes of [A-Za-z0-9_-]. Device ids appear in NATS
// subjects, MQTT topics and URL paths, so nothing else is allowed.
func ValidDeviceID(id string) bool {
	if len(id) == 0 || len(id) > MaxDeviceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// MaxCommandNameLen is the longest command name, in bytes.
const MaxCommandNameLen = 128

// ValidCommandName reports whether name can be a command's name: 1 to
// MaxCommandNameLen printable ASCII bytes without a space or any of
// . * > / + # — a name is one token of a NATS subject
// (devices.<id>.commands.<name>) and one level of an MQTT topic
// (devices/<id>/commands/<name>).
func ValidCommandName(name string) bool {
	if len(name) == 0 || len(name) > MaxCommandNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c <= ' ' || c >= 0x7f:
			return false
		case c == '.' || c == '*' || c == '>' || c == '/' || c == '+' || c == '#':
			return false
		}
	}
	return true
}

// TokenLeeway is the clock skew allowed on a token's nbf and iat claims:
// a token is accepted up to 30s before either. It does not apply to exp,
// which is enforced to the second, as it is while the device stays
// connected.
const TokenLeeway = 30 * time.Second

// authMaxTokenLen bounds the token Authenticate will parse.
const authMaxTokenLen = 8 << 10

// warrenClaims are the claims warren reads and issues.
type warrenClaims struct {
	jwt.RegisteredClaims
	Role Role `json:"warren_role,omitempty"`
}

// NewHMACAuth returns an Authenticator for HS256 tokens signed with
// secret. Any other algorithm, "none" included, is rejected. An empty
// secret rejects every token. The secret is copied.
func NewHMACAuth(secret []byte) Authenticator {
	a := &hmacAuth{secret: append([]byte(nil), secret...)}
	a.scratch.New = func() any { return &hmacScratch{mac: hmac.New(sha256.New, a.secret)} }
	return a
}

type hmacAuth struct {
	secret  []byte
	scratch sync.Pool // *hmacScratch
}

// hmacScratch is what the HS256 fast path reuses from one token to the
// next: the keyed HMAC and a buffer for the decoded claims.
type hmacScratch struct {
	mac    hash.Hash
	claims []byte
	sum    [sha256.Size]byte
}

// hmacMaxScratch bounds the claims buffer a scratch keeps.
const hmacMaxScratch = 1 << 10

var _ Authenticator = (*hmacAuth)(nil)

func (a *hmacAuth) Authenticate(token string, now time.Time) (Identity, error) {
	if len(a.secret) == 0 && token != "" {
		return Identity{}, fmt.Errorf("%w: no HS256 secret configured", ErrTokenInvalid)
	}
	if id, ok := a.fast(token, now); ok {
		return id, nil
	}
	return authVerify(token, now, jwt.SigningMethodHS256.Alg(), a.secret)
}

// hs256Claims are warrenClaims as the fast path decodes them: the same
// JSON names, the dates as the numbers jwt.NumericDate reads (its
// UnmarshalJSON runs a json.Unmarshal of its own per date).
type hs256Claims struct {
	Issuer    string           `json:"iss,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Audience  jwt.ClaimStrings `json:"aud,omitempty"`
	ExpiresAt *json.Number     `json:"exp,omitempty"`
	NotBefore *json.Number     `json:"nbf,omitempty"`
	IssuedAt  *json.Number     `json:"iat,omitempty"`
	ID        string           `json:"jti,omitempty"`
	Role      Role             `json:"warren_role,omitempty"`
}

// numericDate sets d to the date n seconds after the epoch as
// jwt.NumericDate's UnmarshalJSON does (a float64 split into whole and
// fractional seconds, truncated to jwt.TimePrecision); false if n is not
// a float64.
func numericDate(n json.Number, d *jwt.NumericDate) bool {
	f, err := n.Float64()
	if err != nil {
		return false
	}
	round, frac := math.Modf(f)
	d.Time = time.Unix(int64(round), int64(frac*1e9)).Truncate(jwt.TimePrecision)
	return true
}

// hs256Headers are the JWT headers the fast path takes, decoded: the one
// golang-jwt and most libraries write (keys sorted), the other order, and
// no typ. A token with any other header takes the parser's path.
var hs256Headers = [...]string{`{"alg":"HS256","typ":"JWT"}`, `{"typ":"JWT","alg":"HS256"}`, `{"alg":"HS256"}`}

// fast is Authenticate for the tokens warren and most issuers write, with
// a fraction of the parser's garbage (≈ 2.7 KB a token: a Parser, the
// header as a map, the split parts, a keyed HMAC per call): it reports
// ok only for a token the parser's path would accept with the same
// Identity, and leaves every other token, with its error, to that path.
// It does what the parser does, in the same order: three segments; a
// header that is one of hs256Headers; the claims decoded by json.Unmarshal
// into warrenClaims; a 32-byte signature equal to the HMAC-SHA256 of the
// first two segments; exp, nbf and iat checked at now with TokenLeeway as
// the parser's validator checks them; then claimsIdentity.
func (a *hmacAuth) fast(token string, now time.Time) (Identity, bool) {
	if token == "" || len(token) > authMaxTokenLen {
		return Identity{}, false
	}
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return Identity{}, false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sig, '.') >= 0 {
		return Identity{}, false
	}
	enc := base64.RawURLEncoding
	var hb [32]byte
	if enc.DecodedLen(len(h)) > len(hb) {
		return Identity{}, false
	}
	n, err := enc.Decode(hb[:], []byte(h))
	if err != nil || !slices.Contains(hs256Headers[:], string(hb[:n])) {
		return Identity{}, false
	}
	var sb [sha256.Size]byte
	if enc.DecodedLen(len(sig)) != len(sb) {
		return Identity{}, false
	}
	if n, err := enc.Decode(sb[:], []byte(sig)); err != nil || n != len(sb) {
		return Identity{}, false
	}
	sc := a.scratch.Get().(*hmacScratch)
	defer func() {
		if cap(sc.claims) > hmacMaxScratch {
			sc.claims = nil
		}
		a.scratch.Put(sc)
	}()
	sc.claims = slices.Grow(sc.claims[:0], enc.DecodedLen(len(payload)))
	cb := sc.claims[:enc.DecodedLen(len(payload))]
	n, err = enc.Decode(cb, []byte(payload))
	if err != nil {
		return Identity{}, false
	}
	var fc hs256Claims
	if json.Unmarshal(cb[:n], &fc) != nil {
		return Identity{}, false
	}
	c := warrenClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: fc.Subject}, Role: fc.Role}
	var exp, nbf, iat jwt.NumericDate
	for _, d := range [...]struct {
		n  *json.Number
		to *jwt.NumericDate
		p  **jwt.NumericDate
	}{{fc.ExpiresAt, &exp, &c.ExpiresAt}, {fc.NotBefore, &nbf, &c.NotBefore}, {fc.IssuedAt, &iat, &c.IssuedAt}} {
		if d.n == nil {
			continue
		}
		if !numericDate(*d.n, d.to) {
			return Identity{}, false
		}
		*d.p = d.to
	}
	sc.mac.Reset()
	sc.mac.Write([]byte(token[:len(h)+1+len(payload)]))
	if !hmac.Equal(sc.mac.Sum(sc.sum[:0]), sb[:]) {
		return Identity{}, false
	}
	if exp := c.ExpiresAt; exp != nil && !now.Before(exp.Add(TokenLeeway)) {
		return Identity{}, false
	}
	if nbf := c.NotBefore; nbf != nil && now.Before(nbf.Add(-TokenLeeway)) {
		return Identity{}, false
	}
	if iat := c.IssuedAt; iat != nil && now.Before(iat.Add(-TokenLeeway)) {
		return Identity{}, false
	}
	id, err := claimsIdentity(&c, now)
	return id, err == nil
}

// String describes the authenticator for logs, without the secret.
func (a *hmacAuth) String() string { return "HS256 secret" }

// NewPublicKeyAuth returns an Authenticator for tokens signed by the
// holder of the private key matching pemBytes: RS256 for an RSA key
// (2048 bits or more), ES256 for an ECDSA P-256 key, EdDSA for an Ed25519
// key. Each key accepts only its algorithm. pemBytes holds a "PUBLIC KEY"
// (PKIX), "RSA PUBLIC KEY" (PKCS #1) or "CERTIFICATE" block; the first
// such block is used. A certificate only carries the key: its validity
// period and chain are not checked.
func NewPublicKeyAuth(pemBytes []byte) (Authenticator, error) {
	rest := pemBytes
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New(`gateway: public key: no "PUBLIC KEY" or "CERTIFICATE" PEM block`)
		}
		var pub any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(b.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("gateway: public key: PEM holds a %s; give the public key", b.Type)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("gateway: public key: %v", err)
		}
		return newPublicKeyAuth(pub)
	}
}

func newPublicKeyAuth(pub any) (Authenticator, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 {
			return nil, fmt.Errorf("gateway: public key: RSA key of %d bits, want at least 2048", n)
		}
		return &publicKeyAuth{alg: jwt.SigningMethodRS256.Alg(), key: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("gateway: public key: ECDSA curve %s, want P-256 (ES256)", k.Curve.Params().Name)
		}
		return &publicKeyAuth{alg: jwt.SigningMethodES256.Alg(), key: k}, nil
	case ed25519.PublicKey:
		return &publicKeyAuth{alg: jwt.SigningMethodEdDSA.Alg(), key: k}, nil
	default:
		return nil, fmt.Errorf("gateway: public key: unsupported key type %T (want RSA, ECDSA P-256 or Ed25519)", pub)
	}
}

type publicKeyAuth struct {
	alg string
	key any
}

var _ Authenticator = (*publicKeyAuth)(nil)

func (a *publicKeyAuth) Authenticate(token string, now time.Time) (Identity, error) {
	return authVerify(token, now, a.alg, a.key)
}

// String describes the authenticator for logs, e.g. "RS256 public key".
func (a *publicKeyAuth) String() string { return a.alg + " public key" }

// NoAuth returns an Authenticator that checks nothing: the token is taken
// to be the device id itself (the WebSocket and MQTT layers pass the
// device id when a client presents no token). The id must still satisfy
// ValidDeviceID; the identity has RoleDevice and no expiry. It is for
// development only; the gateway logs a warning when it is configured.
func NoAuth() Authenticator { return noAuth{} }

type noAuth struct{}

var _ Authenticator = noAuth{}

func (noAuth) Authenticate(token string, _ time.Time) (Identity, error) {
	if token == "" {
		return Identity{}, ErrTokenMissing
	}
	if !ValidDeviceID(token) {
		return Identity{}, fmt.Errorf("%w: %.64q", ErrBadDeviceID, token)
	}
	return Identity{Device: token, Role: RoleDevice}, nil
}

// String describes the authenticator for logs.
func (noAuth) String() string { return "none" }

// authVerify checks token's signature with key under alg alone, then its
// claims at now.
func authVerify(token string, now time.Time, alg string, key any) (Identity, error) {
	if token == "" {
		return Identity{}, ErrTokenMissing
	}
	if len(token) > authMaxTokenLen {
		return Identity{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTokenInvalid, len(token), authMaxTokenLen)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{alg}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(TokenLeeway),
		jwt.WithIssuedAt(),
	)
	var c warrenClaims
	if _, err := p.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Identity{}, fmt.Errorf("%w: %v", ErrTokenExpired, err)
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
	return claimsIdentity(&c, now)
}

// claimsIdentity is the Identity of verified claims c at now: the checks
// warren adds to the parser's (exp to the second, the device id, the
// role).
func claimsIdentity(c *warrenClaims, now time.Time) (Identity, error) {
	id := Identity{Device: c.Subject, Role: c.Role}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
		// The parser allowed TokenLeeway past exp; exp itself is exact.
		if id.Expired(now) {
			return Identity{}, fmt.Errorf("%w: expired at %s", ErrTokenExpired, id.Expires.UTC().Format(time.RFC3339))
		}
	}
	if !ValidDeviceID(id.Device) {
		return Identity{}, fmt.Errorf("%w: sub %.64q", ErrBadDeviceID, id.Device)
	}
	if id.Role == "" {
		id.Role = RoleDevice
	} else if !id.Role.valid() {
		return Identity{}, fmt.Errorf("%w: warren_role %.32q", ErrBadRole, string(id.Role))
	}
	return id, nil
}

// IssueToken returns an HS256 token for device with role (empty means
// RoleDevice), issued at now and expiring ttl later; ttl <= 0 means no exp
// claim. Times are rounded down to the second. NewHMACAuth(secret)
// accepts the token.
func IssueToken(secret []byte, device string, role Role, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("gateway: issue token: empty secret")
	}
	if !ValidDeviceID(device) {
		return "", fmt.Errorf("%w: %.64q", ErrBadDeviceID, device)
	}
	if role == "" {
		role = RoleDevice
	}
	if !role.valid() {
		return "", fmt.Errorf("%w: %.32q", ErrBadRole, string(role))
	}
	c := warrenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:  device,
			IssuedAt: jwt.NewNumericDate(now),
		},
		Role: role,
	}
	if ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// BearerToken returns the token in an Authorization header value of the
// form "Bearer <token>", the scheme matched case-insensitively. The
// result aliases h. It reports false for another scheme or an empty or
// malformed token.
func BearerToken(h []byte) ([]byte, bool) {
	const scheme = "bearer"
	h = authTrimSpace(h)
	if len(h) <= len(scheme) || h[len(scheme)] != ' ' {
		return nil, false
	}
	for i := 0; i < len(scheme); i++ {
		if h[i]|0x20 != scheme[i] {
			return nil, false
		}
	}
	tok := authTrimSpace(h[len(scheme):])
	if len(tok) == 0 {
		return nil, false
	}
	for _, c := range tok {
		if c <= ' ' || c == 0x7f {
			return nil, false
		}
	}
	return tok, true
}

// authTrimSpace trims HTTP optional whitespace (spaces and tabs).
func authTrimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

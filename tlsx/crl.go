package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/maphash"
	"math/big"
	"os"
	"time"

	"github.com/warrenhq/warren/engine"
)

// ErrRevoked is matched (errors.Is) by the error of a handshake whose
// client certificate, or a CA certificate in its chain, is listed in a
// certificate revocation list (Config.CRLFile). The error is a
// *RevokedError.
var ErrRevoked = errors.New("tlsx: certificate revoked")

// RevokedError says which certificate a CRL revoked.
type RevokedError struct {
	Subject   string   // the revoked certificate's subject
	Serial    *big.Int // its serial number
	Issuer    string   // the CRL's issuer
	RevokedAt time.Time
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("tlsx: certificate %q (serial %X) revoked by %q at %s", e.Subject, e.Serial, e.Issuer,
		e.RevokedAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrRevoked) true.
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// crlSet is the revocation lists in force, indexed by issuer: a Server
// swaps the whole set on reload.
type crlSet struct {
	byIssuer map[string][]*crlEntry // raw issuer name → its lists
	// keys holds the revKey of every revoked certificate, for Revoked: a
	// connection keeps its client certificate's key, not the certificate.
	keys map[uint64]struct{}
	// nextUpdate is the earliest NextUpdate of the lists (zero: none has
	// one), for the staleness gauge.
	nextUpdate time.Time
}

// crlEntry is one list: its serials for a lookup without a scan.
type crlEntry struct {
	issuer  string
	revoked map[string]time.Time // big-endian serial bytes → revocation time
}

// loadCRLs reads the lists of name (PEM "X509 CRL" blocks, or one DER
// list) and checks each one's signature against a certificate of cas (the
// client CA file's certificates): a list no CA signed is refused, as is a
// file with no list.
func loadCRLs(name string, cas []*x509.Certificate) (*crlSet, error) {
	raw, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("tlsx: CRL: %w", err)
	}
	var ders [][]byte
	if rest := raw; len(raw) > 0 && raw[0] != 0x30 { // DER starts with a SEQUENCE
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "X509 CRL" {
				ders = append(ders, b.Bytes)
			}
		}
	} else {
		ders = append(ders, raw)
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("tlsx: CRL: no revocation list in %s", name)
	}
	lists := make([]*x509.RevocationList, 0, len(ders))
	for i, der := range ders {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("tlsx: CRL %d of %s: %w", i+1, name, err)
		}
		if err := checkCRLSignature(rl, cas); err != nil {
			return nil, fmt.Errorf("tlsx: CRL %d of %s: %w", i+1, name, err)
		}
		lists = append(lists, rl)
	}
	return newCRLSet(lists), nil
}

// checkCRLSignature finds the CA among cas whose subject is rl's issuer and
// checks rl's signature with its key.
func checkCRLSignature(rl *x509.RevocationList, cas []*x509.Certificate) error {
	var last error
	for _, ca := range cas {
		if string(ca.RawSubject) != string(rl.RawIssuer) {
			continue
		}
		if last = rl.CheckSignatureFrom(ca); last == nil {
			return nil
		}
	}
	if last != nil {
		return fmt.Errorf("issued by %q: signature: %w", rl.Issuer, last)
	}
	return fmt.Errorf("issued by %q, not one of the client CAs", rl.Issuer)
}

// newCRLSet indexes lists, whose signatures are checked.
func newCRLSet(lists []*x509.RevocationList) *crlSet {
	set := &crlSet{byIssuer: make(map[string][]*crlEntry, len(lists)), keys: make(map[uint64]struct{})}
	for _, rl := range lists {
		e := &crlEntry{issuer: rl.Issuer.String(), revoked: make(map[string]time.Time, len(rl.RevokedCertificateEntries))}
		for _, r := range rl.RevokedCertificateEntries {
			if r.SerialNumber != nil {
				serial := r.SerialNumber.Bytes()
				e.revoked[string(serial)] = r.RevocationTime
				set.keys[revKey(rl.RawIssuer, serial)] = struct{}{}
			}
		}
		set.byIssuer[string(rl.RawIssuer)] = append(set.byIssuer[string(rl.RawIssuer)], e)
		if !rl.NextUpdate.IsZero() && (set.nextUpdate.IsZero() || rl.NextUpdate.Before(set.nextUpdate)) {
			set.nextUpdate = rl.NextUpdate
		}
	}
	return set
}

// check returns a *RevokedError when a certificate of a verified chain
// (the leaf or an intermediate; not the root, which only trust removes) is
// listed by its issuer's revocation list.
func (set *crlSet) check(chains [][]*x509.Certificate) error {
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			c := chain[i]
			for _, e := range set.byIssuer[string(c.RawIssuer)] {
				if at, ok := e.revoked[string(c.SerialNumber.Bytes())]; ok {
					return &RevokedError{Subject: c.Subject.String(), Serial: c.SerialNumber, Issuer: e.issuer, RevokedAt: at}
				}
			}
		}
	}
	return nil
}

// revKeySeed seeds revKey: keys are compared within one process only.
var revKeySeed = maphash.MakeSeed()

// revKey is a 64-bit key of a certificate: its issuer's raw name and its
// serial number, never 0. A connection keeps its client certificate's (8
// bytes, where the certificate is kilobytes) so that revocation lists
// loaded after its handshake can be checked against it (Server.Revoked).
// Two certificates sharing a key (about one chance in 2^64 per pair) make
// Revoked report the other's revocation: the connection is closed, and
// its client's next handshake checks its own certificate.
func revKey(rawIssuer, serial []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(revKeySeed)
	var n [4]byte
	n[0], n[1], n[2], n[3] = byte(len(rawIssuer)>>24), byte(len(rawIssuer)>>16), byte(len(rawIssuer)>>8), byte(len(rawIssuer))
	h.Write(n[:])
	h.Write(rawIssuer)
	h.Write(serial)
	return max(h.Sum64(), 1)
}

// Revoked reports whether c's client certificate is listed by the
// revocation lists in force now (Config.CRLFile, CRLs): lists loaded since
// c's handshake included. It is false for a connection without a client
// certificate, one that is not (yet) a TLS connection of this package, and
// when no list is configured. Only the client's own certificate is
// checked: a CA certificate of its chain revoked later is not (its next
// handshake refuses it). It is safe for concurrent use; see
// OnRevocationReload for when to ask.
func (s *Server) Revoked(c *engine.Conn) bool {
	st := State(c)
	set := s.crls.Load()
	if st == nil || st.revKey == 0 || set == nil {
		return false
	}
	_, ok := set.keys[st.revKey]
	return ok
}

// OnRevocationReload registers fn to run after each reload (Reload, or
// Watch on SIGHUP or a file change) that loaded revocation lists, on the
// reloading goroutine, so that the owner of the connections can close
// those whose client certificate is now revoked (Revoked): the handshake
// refuses a revoked certificate, and this reaches the connections made
// before. It returns a function that unregisters fn.
func (s *Server) OnRevocationReload(fn func()) (remove func()) {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	s.revSeq++
	id := s.revSeq
	if s.revFns == nil {
		s.revFns = make(map[uint64]func())
	}
	s.revFns[id] = fn
	return func() {
		s.revMu.Lock()
		delete(s.revFns, id)
		s.revMu.Unlock()
	}
}

// revocationReloaded runs the OnRevocationReload functions.
func (s *Server) revocationReloaded() {
	s.revMu.Lock()
	fns := make([]func(), 0, len(s.revFns))
	for _, fn := range s.revFns {
		fns = append(fns, fn)
	}
	s.revMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// verifyConnection is the handshakes' tls.Config.VerifyConnection when
// revocation lists are configured. crypto/tls calls it on resumed
// sessions too (VerifyPeerCertificate it does not), so a revoked device
// cannot come back on a ticket issued before its revocation.
func (s *Server) verifyConnection(cs tls.ConnectionState) error {
	set := s.crls.Load()
	if set == nil {
		return nil
	}
	return set.check(cs.VerifiedChains)
}

// caCertificates parses the certificates of a PEM bundle.
func caCertificates(pemData []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := pemData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

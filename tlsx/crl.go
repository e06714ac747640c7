package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
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
	set := &crlSet{byIssuer: make(map[string][]*crlEntry, len(lists))}
	for _, rl := range lists {
		e := &crlEntry{issuer: rl.Issuer.String(), revoked: make(map[string]time.Time, len(rl.RevokedCertificateEntries))}
		for _, r := range rl.RevokedCertificateEntries {
			if r.SerialNumber != nil {
				e.revoked[string(r.SerialNumber.Bytes())] = r.RevocationTime
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

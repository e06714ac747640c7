package gateway

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/mqtt"
	"github.com/warrenhq/warren/tlsx"
)

// Reasons a device's client certificate is refused, in the log and in
// warren_gateway_cert_auth_total{result}.
const (
	CertBadID    = "cert_bad_id"   // the certificate's identity is not a valid device id
	CertMismatch = "cert_mismatch" // a token names another device than the certificate
)

// certAuth turns a verified client certificate (mutual TLS) into a device
// identity, for WebSocket and MQTT devices alike. The rules:
//
//   - No token: the certificate's identity (tlsx.Identity: subject CN, or
//     the SAN URI's rest with -tls-identity-uri-prefix) is the device id,
//     role device, no expiry beyond the certificate's own (checked in the
//     handshake). It must satisfy ValidDeviceID.
//   - A token too: the token is authenticated as usual and wins (its role
//     and exp apply), but a device token must name the certificate's
//     device; otherwise the connection is refused (cert_mismatch).
//     A service token is refused on a device certificate as well.
//   - No certificate: tokens only, as without TLS.
type certAuth struct {
	accepted, tokenToo, badID, mismatch atomic.Uint64
	log                                 interface{ Warn(string, ...any) }
}

// identityFor returns the identity of a connection with certificate
// identity certID and token tok ("" for none), authenticating tok with
// auth at now. On refusal it returns the reason, and tokErr when the token
// itself was refused (err is then that error).
func (ca *certAuth) identityFor(auth Authenticator, cert clientCert, tok string, now time.Time) (ident Identity, reason string, tokErr bool, err error) {
	certID := cert.id
	if !ValidDeviceID(certID) {
		ca.badID.Add(1)
		ca.log.Warn("gateway: client certificate refused", "reason", CertBadID, "identity", fmt.Sprintf("%.64q", certID))
		return Identity{}, CertBadID, false, fmt.Errorf("%w: certificate identity %.64q", ErrBadDeviceID, certID)
	}
	if tok == "" {
		ca.accepted.Add(1)
		return Identity{Device: certID, Role: RoleDevice, Expires: cert.notAfter}, "", false, nil
	}
	if ident, err = auth.Authenticate(tok, now); err != nil {
		return Identity{}, AuthReason(err), true, err
	}
	if ident.Role != RoleDevice || ident.Device != certID {
		ca.mismatch.Add(1)
		ca.log.Warn("gateway: client certificate refused", "reason", CertMismatch, "certificate", certID, "token", ident.Device)
		return Identity{}, CertMismatch, false, fmt.Errorf("gateway: the token names %q, the client certificate %q", ident.Device, certID)
	}
	if !cert.notAfter.IsZero() && (ident.Expires.IsZero() || cert.notAfter.Before(ident.Expires)) {
		ident.Expires = cert.notAfter // nor may it outlive its certificate
	}
	ca.tokenToo.Add(1)
	ca.accepted.Add(1)
	return ident, "", false, nil
}

// acceptCert is the WebSocket upgrade's authentication when the
// connection has a client certificate: it answers the refusal itself and
// reports whether the device may connect, with its identity.
func (d *wsDevices) acceptCert(r *http1.Ctx, cert clientCert, tok []byte) (Identity, bool) {
	ident, reason, tokErr, err := d.certs.identityFor(d.auth, cert, string(tok), d.now())
	if err != nil {
		d.refusedAuth.Add(1)
		d.hub.m.authFailures.Add(1)
		status := 403
		if tokErr {
			status = 401
		}
		refuseJSON(r, status, reason, err.Error())
		return Identity{}, false
	}
	return ident, true
}

func refuseJSON(r *http1.Ctx, status int, reason, msg string) {
	r.SetStatus(status)
	r.SetHeader("Content-Type", "application/json")
	b, _ := json.Marshal(map[string]string{"error": reason, "message": msg})
	r.Write(b)
}

// clientCert is what the gateway takes from a client certificate.
type clientCert struct {
	id       string    // tlsx.Identity; "" without a certificate
	notAfter time.Time // the certificate's NotAfter
}

// certIdentity returns the client certificate of c (its id "" without
// one).
func certIdentity(c *engine.Conn) clientCert {
	if c == nil {
		return clientCert{}
	}
	st := tlsx.State(c)
	if st == nil || st.Identity == "" {
		return clientCert{}
	}
	return clientCert{id: st.Identity, notAfter: time.Unix(st.CertNotAfter, 0)}
}

// authenticateCert is the MQTT CONNECT's authentication when the
// connection has a client certificate: no password needed, the client id
// must be the certificate's identity; a password (the token) wins but
// must name the same device.
func (d *mqttDevices) authenticateCert(ci *mqtt.ConnectInfo, cert clientCert) (any, mqtt.ReasonCode, string) {
	tok := ""
	if ci.HasPassword && !d.anon {
		tok = string(ci.Password)
	}
	ident, reason, tokErr, err := d.certs.identityFor(d.auth, cert, tok, d.now())
	switch {
	case tokErr:
		d.refusedAuth.Add(1)
		d.hub.m.authFailures.Add(1)
		return nil, mqtt.BadUserNameOrPassword, reason
	case err != nil:
		d.refusedAuth.Add(1)
		d.hub.m.authFailures.Add(1)
		return nil, mqtt.NotAuthorized, reason
	case ident.Device != ci.ClientID:
		d.refusedID.Add(1)
		return nil, mqtt.ClientIdentifierNotValid, "client id must be the certificate's device id"
	}
	return &mqttDevice{d: d, ident: ident}, mqtt.Success, ""
}

// Collector returns the certificate authentication's metrics.
func (ca *certAuth) collector() prometheus.Collector { return (*certCollector)(ca) }

type certCollector certAuth

var certAuthDesc = prometheus.NewDesc("warren_gateway_cert_auth_total",
	"Devices authenticated by a client certificate (accepted; token_too: a token naming the same device was given too) or refused (cert_bad_id, cert_mismatch).",
	[]string{"result"}, nil)

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certAuthDesc }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range []struct {
		n *atomic.Uint64
		l string
	}{{&c.accepted, "accepted"}, {&c.tokenToo, "token_too"}, {&c.badID, CertBadID}, {&c.mismatch, CertMismatch}} {
		ch <- prometheus.MustNewConstMetric(certAuthDesc, prometheus.CounterValue, float64(v.n.Load()), v.l)
	}
}

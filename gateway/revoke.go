package gateway

import "github.com/warrenhq/warren/engine"

// ReasonCertRevoked closes a device connected over TLS whose client
// certificate a revocation list loaded since it connected names
// (tlsx.Config.CRLFile reloaded on SIGHUP or a file change): the
// handshake refuses the certificate from then on, and the gateway closes
// the connections made before, whether the device authenticated with the
// certificate or with a token. WebSocket close code CloseCertRevoked;
// MQTT 5.0 DISCONNECT 0x87 (not authorized).
const ReasonCertRevoked = "certificate_revoked"

// engineConner is a transport that runs on an engine connection.
type engineConner interface {
	engineConn() *engine.Conn
}

func (dev *wsDevice) engineConn() *engine.Conn { return dev.c.Engine() }

func (l *mqttLink) engineConn() *engine.Conn {
	if c := l.client.Load(); c != nil {
		return c.Conn()
	}
	return nil
}

// closeRevoked closes the devices on this node whose client certificate
// the revocation lists now in force name. Config.TLS runs it after each
// reload with lists.
func (g *Gateway) closeRevoked() {
	n := 0
	g.hub.Sessions(func(s *Session) {
		ec, ok := s.t.(engineConner)
		if !ok {
			return
		}
		if c := ec.engineConn(); c != nil && g.cfg.TLS.Revoked(c) {
			s.t.Close(ReasonCertRevoked)
			n++
		}
	})
	if n > 0 {
		g.hub.log.Warn("gateway: closed the devices whose client certificate a reloaded revocation list names",
			"devices", n, "reason", ReasonCertRevoked)
	}
}

package http1

import "github.com/warrenhq/warren/engine"

// ListenWrapped is Listen with the server's connection handler wrapped by
// wrap before the engine gets it: a TLS layer (tlsx.Server.Handler) that
// hands each connection to the HTTP handler once its handshake is done.
// The listener gets the server's timeouts, as with Listen.
func (s *Server) ListenWrapped(addr string, wrap func(engine.Handler) engine.Handler) (*engine.Listener, error) {
	s.initRoutes()
	ln, err := s.eng.Listen(addr, wrap(s.Handler()))
	if err != nil {
		return nil, err
	}
	s.attach(ln)
	return ln, nil
}

// Package tlsx terminates TLS on warren's event loops: TLS as a layer that
// wraps a protocol handler, per connection, so HTTP, WebSocket (after an
// upgrade) and MQTT read and write plain bytes through their usual
// engine.Conn calls.
//
// # How a connection goes
//
// Server.Handler wraps a protocol's engine.Handler for a listener. On
// accept, the flapping bans and the per-IP and per-listener token buckets
// admit the connection before any TLS work (refusals are counted by
// bound). A client IP whose connections keep ending short — failed or
// abandoned handshakes, or connections closed within Config.BanLifetime of
// opening — more than Config.BanThreshold times over Config.BanWindow is
// banned for Config.BanDuration (a bounded table, time from Config.Clock). Its bytes are copied
// on the loop into a small adapter; once a whole first record is there and
// looks like a TLS handshake (plaintext HTTP gets a 400 saying so, anything
// else is closed), the connection is queued for a bounded pool of
// handshake workers (Config.HandshakeWorkers, Config.HandshakeQueue: over
// the bound it is refused, never queued without limit; GOMAXPROCS workers
// stay, the others end after WorkerIdle without a job). A worker runs
// crypto/tls's standard server handshake over the adapter, which hands
// crypto/tls one whole record at a time, so nothing read past the
// handshake stays inside tls.Conn. A handshake holds one of
// Config.HandshakeCPU slots (GOMAXPROCS/2) while it computes and none
// while it waits for its client, so a storm of handshakes leaves the
// event loops their share of the CPU; while handshakes come in a burst
// (Config.BurstRate a second) the garbage collector's target is raised to
// Config.BurstGCPercent. On Linux each worker computes on an OS thread of
// its own at nice Config.HandshakeNice (10), with spare Ps while
// handshakes run, so the kernel too runs the loops first.
// Config.HandshakeTimeout bounds the whole
// handshake from its first byte (slowloris), and Config.FlightTimeout each
// of the client's turns in it, so a stalled client frees its worker soon.
//
// After a TLS 1.3 handshake the tls.Conn is dropped: the traffic secrets,
// caught through a per-connection Config.KeyLogWriter, key warren's own
// record layer (AES-GCM from crypto/aes and crypto/cipher,
// ChaCha20-Poly1305 from golang.org/x/crypto, keys derived with
// HKDF-Expand-Label on crypto/hkdf), installed as the connection's
// engine.Transform: records are opened in place in the loop's read buffer
// and sealed into the write queue. KeyUpdate is answered, close_notify is
// exchanged, and anything else — a renegotiation attempt, a bad MAC, an
// oversized record, an unexpected message — gets its alert and closes the
// connection with a typed detail (tls_bad_record_mac, …). An idle TLS 1.3
// connection holds its keys, sequence numbers and the ConnState: no
// goroutine, no buffer, no tls.Conn. The AEAD ciphers are built per burst
// of records unless Config.KeepCiphers.
//
// After a TLS 1.2 handshake on an ECDHE AEAD suite (the only ones the
// Server offers) the same record layer takes over in TLS 1.2's record
// format: the key block comes from the TLS 1.2 PRF (HMAC from crypto/hmac)
// over the master secret of the key log's CLIENT_RANDOM line (or, on
// resumption, of the session ticket, which carries it) and the hellos'
// randoms, the server's taken from the plaintext ServerHello; both
// Finished records must open with the derived keys at sequence number 0
// before the switch. A TLS 1.2 connection that fails a check (or a
// Client's on a CBC suite) keeps crypto/tls's record layer, driven from
// the loop through the adapter: no goroutine, but the tls.Conn and its
// buffers stay, several KB per idle connection (docs/tls.md).
//
// Mutual TLS (Config.ClientCAFile) verifies client certificates with
// crypto/tls; State and Identity give a connection's version, ALPN and
// identity (the certificate's subject CN, or the rest of a SAN URI with
// Config.IdentityURIPrefix such as "urn:device:"). Server.Reload, SIGHUP
// and file changes (Server.Watch) switch new handshakes to a new
// certificate; a bad one is refused and the old kept. Config.CRLFile adds
// certificate revocation lists, reloaded with the certificate: a listed
// client certificate fails its handshake (ErrRevoked, RevokedError),
// resumed sessions included, and a list loaded later reaches the
// connections already made: Server.Revoked tells whether a connection's
// client certificate is listed now, and Server.OnRevocationReload runs the
// owner's sweep after each reload. Server.Collector
// exports handshakes by result and version, the handshake duration, the
// queue depth, the certificate's remaining lifetime, refusals by bound and
// record-layer errors.
package tlsx

package tlsx_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (scripts/test installs it)", name)
	}
	return p
}

func run(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestOpenSSL: openssl s_client over TLS 1.2 and every TLS 1.3 suite, with
// and without a client certificate.
func TestOpenSSL(t *testing.T) {
	openssl := need(t, "openssl")
	p := newPKI(t)
	plain := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
	mtls := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile})
	req := "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
	cases := []struct {
		name string
		args []string
	}{
		{"tls12-aes128", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}},
		{"tls12-chacha", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}},
		{"tls13-aes128", []string{"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"}},
		{"tls13-aes256", []string{"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"}},
		{"tls13-chacha", []string{"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"}},
	}
	for _, tc := range cases {
		for _, withCert := range []bool{false, true} {
			name := tc.name
			s := plain
			want := "hello "
			args := append([]string{"s_client", "-connect", "", "-servername", "localhost", "-CAfile", p.caFile,
				"-verify_return_error", "-quiet", "-alpn", "http/1.1"}, tc.args...)
			if withCert {
				name += "-mtls"
				s = mtls
				want = "hello device-cn-7"
				args = append(args, "-cert", p.clientCert, "-key", p.clientKey)
			}
			args[2] = s.addr
			t.Run(name, func(t *testing.T) {
				out, err := run(t, req, openssl, args...)
				if err != nil || !strings.Contains(out, "HTTP/1.1 200") || !strings.Contains(out, want) {
					t.Fatalf("openssl %v: %v\n%s", tc.args, err, out)
				}
			})
		}
	}
}

// TestOpenSSL12Suites: openssl s_client -tls1_2 with each ECDHE AEAD suite
// (-cipher), against an ECDSA and an RSA certificate, then a resumption of
// the session it saved (-sess_out, -sess_in): all on warren's record
// layer.
func TestOpenSSL12Suites(t *testing.T) {
	openssl := need(t, "openssl")
	p := newPKI(t)
	rsaCert, rsaKey := p.issueRSA(t)
	req := "GET / HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000\r\nConnection: close\r\n\r\n" +
		strings.Repeat("0123456789", 2000)
	for _, c := range []struct {
		cert, key string
		ciphers   []string
	}{
		{p.certFile, p.keyFile, []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"}},
		{rsaCert, rsaKey, []string{"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"}},
	} {
		s := startServer(t, engine.Config{}, tlsx.Config{CertFile: c.cert, KeyFile: c.key})
		for _, cipher := range c.ciphers {
			t.Run(cipher, func(t *testing.T) {
				sess := p.dir + "/" + cipher + ".sess"
				base := []string{"s_client", "-connect", s.addr, "-servername", "localhost", "-CAfile", p.caFile,
					"-verify_return_error", "-tls1_2", "-cipher", cipher, "-ign_eof"}
				for i, extra := range [][]string{{"-sess_out", sess}, {"-sess_in", sess}} {
					out, err := run(t, req, openssl, append(base, extra...)...)
					if err != nil || strings.Count(out, "HTTP/1.1 200") != 2 || !strings.Contains(out, "hello ") ||
						!strings.Contains(out, strings.Repeat("0123456789", 2000)) || !strings.Contains(out, "Cipher is "+cipher) {
						t.Fatalf("openssl %s (%d): %v\n%s", cipher, i, err, out)
					}
					if resumed := strings.Contains(out, "Reused, TLSv1.2"); resumed != (i == 1) {
						t.Fatalf("openssl %s (%d): resumed %v\n%s", cipher, i, resumed, out)
					}
				}
			})
		}
		onWarrenLayer12(t, s.tls, 2*len(c.ciphers))
	}
}

// TestOpenSSLKeyUpdate: the client updates its keys and asks the server to
// update its own (s_client's K command); requests keep working both ways.
func TestOpenSSLKeyUpdate(t *testing.T) {
	openssl := need(t, "openssl")
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", s.addr, "-servername", "localhost", "-CAfile", p.caFile,
		"-tls1_3", "-crlf", "-verify_return_error")
	in, _ := cmd.StdinPipe()
	outp, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		go io.Copy(io.Discard, outp)
		cmd.Wait()
		pw.Close()
	}()
	lines := bufio.NewScanner(outp)
	waitFor := func(what string) {
		t.Helper()
		for lines.Scan() {
			if strings.Contains(lines.Text(), what) {
				return
			}
		}
		t.Fatalf("openssl output ended before %q", what)
	}
	// s_client's session report goes through buffered stdio; what the
	// server sends and KEYUPDATE (stderr) come at once.
	for i, cmdLetter := range []string{"", "K", "k", "K"} {
		if cmdLetter != "" {
			io.WriteString(in, cmdLetter+"\n")
			waitFor("KEYUPDATE")
		}
		io.WriteString(in, "GET / HTTP/1.1\nHost: localhost\n\n")
		waitFor("Content-Length: 6") // "hello " follows, without a newline
		_ = i
	}
}

// TestOpenSSLRenegotiation: a TLS 1.2 renegotiation attempt (s_client's R)
// is refused (no_renegotiation) and the connection closed, counted as
// tls_renegotiation_refused.
func TestOpenSSLRenegotiation(t *testing.T) {
	openssl := need(t, "openssl")
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", s.addr, "-servername", "localhost", "-CAfile", p.caFile,
		"-tls1_2", "-crlf")
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(outp)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "Verify return code") {
			break
		}
	}
	io.WriteString(in, "R\n")
	done := make(chan error, 1)
	go func() {
		for lines.Scan() {
		}
		done <- cmd.Wait()
	}()
	select {
	case <-done: // the server closed the connection
	case <-time.After(10 * time.Second):
		t.Fatal("renegotiation: connection still open")
	}
	onWarrenLayer12(t, s.tls, 1)
	testutil.Eventually(t, 5*time.Second, "tls_renegotiation_refused counted", func() bool {
		return metric(t, s.tls, `warren_tls_record_errors_total{reason="tls_renegotiation_refused"} 1`)
	})
}

// TestCurl: curl --cacert over both versions, with and without a client
// certificate.
func TestCurl(t *testing.T) {
	curl := need(t, "curl")
	p := newPKI(t)
	plain := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
	mtls := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile})
	for _, v := range [][]string{{"--tlsv1.2", "--tls-max", "1.2"}, {"--tlsv1.3"}} {
		for _, withCert := range []bool{false, true} {
			s, want := plain, "hello "
			args := append([]string{"-sS", "--http1.1", "--cacert", p.caFile, "--max-time", "10"}, v...)
			if withCert {
				s, want = mtls, "hello device-cn-7"
				args = append(args, "--cert", p.clientCert, "--key", p.clientKey)
			}
			args = append(args, "https://localhost:"+s.addr[strings.LastIndexByte(s.addr, ':')+1:]+"/", "https://localhost:"+s.addr[strings.LastIndexByte(s.addr, ':')+1:]+"/")
			out, err := run(t, "", curl, args...)
			if err != nil || out != want+want {
				t.Fatalf("curl %v: %v\n%q", args, err, out)
			}
		}
	}
	onWarrenLayer12(t, plain.tls, 1) // two requests on one connection
	onWarrenLayer12(t, mtls.tls, 1)
	// Without a client certificate the mutual-TLS listener refuses.
	if out, err := run(t, "", curl, "-sS", "--cacert", p.caFile, "--max-time", "10", "https://localhost:"+mtls.addr[strings.LastIndexByte(mtls.addr, ':')+1:]+"/"); err == nil {
		t.Fatalf("curl without a client certificate got through: %q", out)
	}
}

const pythonWSS = `
import asyncio, ssl, sys, websockets
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    if sys.argv[3] == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    async with websockets.connect(sys.argv[1], ssl=ctx, server_hostname="localhost") as ws:
        for i in range(5):
            msg = "m%d-" % i + "x" * (i * 7000)
            await ws.send(msg)
            got = await ws.recv()
            assert got == msg, (len(got), len(msg))
        print("ok", ws.transport.get_extra_info("ssl_object").version())
asyncio.run(main())
`

// TestPythonWebSockets: Python's ssl module with the websockets package
// over wss, both versions.
func TestPythonWebSockets(t *testing.T) {
	py := ""
	for _, c := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(c); err == nil && exec.Command(path, "-c", "import websockets").Run() == nil {
			py = path
			break
		}
	}
	if py == "" {
		t.Skip("no python3 with websockets (scripts/test installs python3-websockets)")
	}
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
	for _, v := range []string{"1.2", "1.3"} {
		out, err := run(t, "", py, "-c", pythonWSS, "wss://"+s.addr+"/ws", p.caFile, v)
		if err != nil || !strings.HasPrefix(out, "ok TLSv"+v) {
			t.Fatalf("python wss %s: %v\n%s", v, err, out)
		}
	}
	onWarrenLayer12(t, s.tls, 1)
}

// TestOpenSSLCRL: a revocation list made by `openssl ca -gencrl` (an
// independent producer) is read, and openssl s_client with the revoked
// certificate is refused while another device's certificate passes.
func TestOpenSSLCRL(t *testing.T) {
	openssl := need(t, "openssl")
	p := newPKI(t)
	_, badSerial := p.clientPairNamed(t, "dev-bad")
	kder, err := x509.MarshalECPrivateKey(p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	caKey := p.dir + "/ca-key.pem"
	writePEM(t, caKey, "EC PRIVATE KEY", kder)
	cfg := p.dir + "/ca.cnf"
	serial := fmt.Sprintf("%X", badSerial)
	if len(serial)%2 == 1 {
		serial = "0" + serial // openssl's index wants whole bytes
	}
	index := fmt.Sprintf("R\t%s\t%s\t%s\tunknown\t/CN=dev-bad\n", time.Now().Add(12*time.Hour).UTC().Format("060102150405Z"),
		time.Now().Add(-time.Minute).UTC().Format("060102150405Z"), serial)
	for name, body := range map[string]string{
		cfg:                  "[ca]\ndefault_ca = d\n[d]\ndatabase = " + p.dir + "/index.txt\ncrlnumber = " + p.dir + "/crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n",
		p.dir + "/index.txt": index,
		p.dir + "/crlnumber": "01\n",
	} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	crl := p.dir + "/crl.pem"
	if out, err := run(t, "", openssl, "ca", "-gencrl", "-config", cfg, "-cert", p.caFile, "-keyfile", caKey, "-out", crl); err != nil {
		t.Fatalf("openssl ca -gencrl: %v\n%s", err, out)
	}
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, CRLFile: crl})
	req := "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
	base := []string{"s_client", "-connect", s.addr, "-servername", "localhost", "-CAfile", p.caFile, "-verify_return_error", "-quiet"}
	for _, ver := range []string{"-tls1_2", "-tls1_3"} {
		out, err := run(t, req, openssl, append(base, ver, "-cert", p.clientCert, "-key", p.clientKey)...)
		if err != nil || !strings.Contains(out, "hello device-cn-7") {
			t.Fatalf("%s: a device not on the list: %v\n%s", ver, err, out)
		}
		out, _ = run(t, req, openssl, append(base, ver, "-cert", p.dir+"/dev-bad.pem", "-key", p.dir+"/dev-bad-key.pem")...)
		if strings.Contains(out, "HTTP/1.1 200") || !strings.Contains(out, "bad certificate") {
			t.Fatalf("%s: the revoked device was not refused with bad_certificate:\n%s", ver, out)
		}
	}
	testutil.Eventually(t, 5*time.Second, "revocations counted", func() bool {
		return metric(t, s.tls, `warren_tls_handshakes_total{result="revoked_client_certificate",version="none"} 2`)
	})
}

package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// SecretFile is the name of the HS256 secret that `warren serve` and
// `warren token` keep in the data directory when no -jwt-secret or
// -jwt-public-key is given.
const SecretFile = "jwt-secret"

// MinSecretLen is the shortest secret LoadOrCreateSecret accepts from
// SecretFile, in bytes: 256 bits, as RFC 7518 asks of an HS256 key.
const MinSecretLen = 32

// authMaxSecretFile bounds what LoadOrCreateSecret reads.
const authMaxSecretFile = 4 << 10

// errSecretTooShort marks a secret file shorter than MinSecretLen.
var errSecretTooShort = errors.New("gateway: secret too short")

// LoadOrCreateSecret returns the HS256 secret kept in dataDir/SecretFile,
// creating dataDir (mode 0700) and the file (mode 0600) if absent; created
// reports whether this call wrote it. A new file holds 32 random bytes,
// hex-encoded, and a newline.
//
// The secret is the file's text with surrounding whitespace trimmed, not
// its hex decoding, so the same text works as -jwt-secret or
// $WARREN_JWT_SECRET elsewhere (and an operator may put any secret of at
// least MinSecretLen bytes there). A shorter file is an error.
//
// Concurrent first starts, in this process or several (prefork workers),
// agree on one secret: each writes a complete temporary file and hard-links
// it to SecretFile, which only one link can win, then every caller reads
// the winner's file.
func LoadOrCreateSecret(dataDir string) (secret []byte, created bool, err error) {
	if dataDir == "" {
		return nil, false, errors.New("gateway: secret: empty data directory")
	}
	path := filepath.Join(dataDir, SecretFile)
	secret, err = authReadSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("gateway: secret: %w", err)
	}
	created, err = authCreateSecret(dataDir, path)
	if err != nil {
		return nil, false, err
	}
	secret, err = authReadSecret(path)
	if !created {
		// Another starter won. With hard links its file is complete when
		// it appears; on the O_EXCL fallback it may still be being
		// written, so give it a moment.
		deadline := time.Now().Add(2 * time.Second)
		for errors.Is(err, errSecretTooShort) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			secret, err = authReadSecret(path)
		}
	}
	if err != nil {
		return nil, false, err
	}
	return secret, created, nil
}

// authReadSecret reads and checks the secret file at path.
func authReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gateway: secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, authMaxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("gateway: secret: %w", err)
	}
	if len(b) > authMaxSecretFile {
		return nil, fmt.Errorf("gateway: secret: %s is longer than %d bytes", path, authMaxSecretFile)
	}
	b = bytes.TrimSpace(b)
	if len(b) < MinSecretLen {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want at least %d", errSecretTooShort, path, len(b), MinSecretLen)
	}
	return b, nil
}

// authCreateSecret writes a new secret to path unless a file is there,
// and reports whether it did.
func authCreateSecret(dir, path string) (bool, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return false, fmt.Errorf("gateway: secret: %w", err)
	}
	text := make([]byte, hex.EncodedLen(len(raw))+1)
	hex.Encode(text, raw[:])
	text[len(text)-1] = '\n'

	tmp, err := os.CreateTemp(dir, "."+SecretFile+"-*") // O_EXCL, mode 0600
	if err != nil {
		return false, fmt.Errorf("gateway: secret: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	_, err = tmp.Write(text)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("gateway: secret: %w", err)
	}
	linkErr := os.Link(tmpName, path)
	if linkErr == nil {
		return true, nil
	}
	if errors.Is(linkErr, fs.ErrExist) {
		return false, nil
	}
	// No hard links on this file system: create the file itself
	// exclusively; losers wait for it to be complete (see above).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("gateway: secret: %w (link: %v)", err, linkErr)
	}
	_, err = f.Write(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, fmt.Errorf("gateway: secret: %w", err)
	}
	return true, nil
}

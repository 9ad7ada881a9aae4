package console

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// A TCP console has no peer credentials, so cfkd asks its clients for a
// token (Server.Token): a secret kept in a file only cfkd's user can
// read, which cfkctl reads too. These functions are that file's rules,
// shared by both sides.

// TokenFileName is the token file's name in cfkd's home directory.
const TokenFileName = "console.token"

// minTokenLen keeps a token written by hand from being guessable.
const minTokenLen = 16

// ReadToken reads the token in path: one word of at least 16 characters,
// in a file no one but its owner can read or write.
func ReadToken(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("token file %s can be read or written by others (mode %04o): chmod 600 it", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(b))
	switch {
	case strings.ContainsAny(token, " \t\r\n"):
		return "", fmt.Errorf("token file %s: the token must be one word on one line", path)
	case len(token) < minTokenLen:
		return "", fmt.Errorf("token file %s: the token must be at least %d characters", path, minTokenLen)
	}
	return token, nil
}

// EnsureToken reads the token in path, or, when there is no such file,
// makes a new random one (256 bits, hex) and writes it there, mode 0600.
// created says which.
func EnsureToken(path string) (token string, created bool, err error) {
	token, err = ReadToken(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return token, false, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", false, err
	}
	token = hex.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another writer won the race: use theirs.
		token, err = ReadToken(path)
		return token, false, err
	}
	if err != nil {
		return "", false, fmt.Errorf("create token file: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("write token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("write token file: %w", err)
	}
	return token, true, nil
}

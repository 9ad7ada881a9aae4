package console

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
// in a regular file (not a symbolic link) owned by the user reading it,
// which no one else can read or write. The checks are made on the file
// that is read, not on the path before reading it.
func ReadToken(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return "", fmt.Errorf("token file %s is a symbolic link: name the file itself", path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("token file %s is not a regular file", path)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("token file %s belongs to uid %d, not to this user (uid %d)", path, st.Uid, os.Geteuid())
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("token file %s can be read or written by others (mode %04o): chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
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
	// Written whole under another name, then linked in place: a reader
	// never sees a half-written file, and a file another writer put there
	// first wins (link fails when the name exists).
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return "", false, fmt.Errorf("create token file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(token + "\n")
		if err == nil {
			err = tmp.Close()
		}
	}
	if err != nil {
		tmp.Close()
		return "", false, fmt.Errorf("write token file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			token, err = ReadToken(path)
			return token, false, err
		}
		return "", false, fmt.Errorf("create token file: %w", err)
	}
	return token, true, nil
}

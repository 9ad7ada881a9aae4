// Package testenv says what a test needs from the machine it runs on.
// A program the test drives (perl, python3, ...) that is missing skips
// the test on a developer's machine, and fails it under CI, where
// scripts/install-test-deps must have installed it: CI never passes by
// skipping what it was meant to test.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool finds a program the test drives, on PATH (or at a path).
// Missing, it fails the test under CI (CI=true) and skips it elsewhere.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed")
	}
	return path
}

// Missing ends a test that lacks what: a failure under CI (CI=true), a
// skip elsewhere.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI must have it: run scripts/install-test-deps", what)
	}
	t.Skipf("%s (scripts/install-test-deps installs it, as root)", what)
}

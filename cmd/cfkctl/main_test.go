package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary run cfkctl's main instead of the tests,
// so that the tests run the real program as a real process.
const helperEnv = "CFKCTL_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// result is what one cfkctl process did.
type result struct {
	stdout, stderr string
	code           int
}

// invocation describes a cfkctl run: its arguments, environment additions
// and standard input.
type invocation struct {
	args  []string
	env   []string
	stdin string
}

// runTimeout bounds one cfkctl process.
const runTimeout = 30 * time.Second

// cfkctl runs cfkctl with args against a clean environment: HOME in a temp
// directory, UTC, no CFKD_* or NO_COLOR from the caller.
func cfkctl(t *testing.T, inv invocation) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], inv.args...)
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "HOME", "TZ", "NO_COLOR", "CFKD_HOME", "CFKD_ADDRESS", "CFKD_TOKEN_FILE":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, helperEnv+"=1", "HOME="+t.TempDir(), "TZ=UTC",
		// Under -race a child would otherwise linger a second at exit.
		"GORACE=atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, inv.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if inv.stdin != "" {
		cmd.Stdin = strings.NewReader(inv.stdin)
	}
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("cfkctl %q: %v", inv.args, err)
	}
	return res
}

// cfkctlAt runs cfkctl against the fake cfkd f.
func cfkctlAt(t *testing.T, f *fakeCfkd, args ...string) result {
	t.Helper()
	return cfkctl(t, invocation{args: append([]string{"--address", f.address()}, args...)})
}

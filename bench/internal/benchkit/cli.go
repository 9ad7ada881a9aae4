package benchkit

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
)

// EnvInt is the count in the environment variable name (a knob of
// run.sh), or def when it is unset or empty. Anything but a count ends
// the driver with status 2.
func EnvInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "driver: %s=%q is not a count\n", name, v)
		os.Exit(2)
	}
	return n
}

// EnvStr is the environment variable name, or def when it is unset or
// empty.
func EnvStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Listed tells whether a comma separated list (PHASES=restart,upgrade)
// holds word.
func Listed(list, word string) bool {
	for _, w := range strings.Split(list, ",") {
		if strings.TrimSpace(w) == word {
			return true
		}
	}
	return false
}

// Logf prints a progress line, "== ...", on stderr: the report goes to
// stdout.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "== "+format+"\n", args...)
}

// Fail prints err, kills every process group Start made (TERM, then KILL
// after TermGrace) and ends the driver with status 1.
func Fail(err error) {
	fmt.Fprintln(os.Stderr, "driver:", err)
	KillAll(TermGrace)
	os.Exit(1)
}

// ExitOnSignal runs cleanup, then ends the driver with status 130, when
// one of sigs arrives (run.sh's trap sends TERM).
func ExitOnSignal(cleanup func(os.Signal), sigs ...os.Signal) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		s := <-ch
		cleanup(s)
		os.Exit(130)
	}()
}

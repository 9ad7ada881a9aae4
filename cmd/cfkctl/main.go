// Command cfkctl is the command line interface of cfkd: it turns a
// subcommand and its service references into lines of the ControlFreak
// language, sends them to cfkd's management socket and prints the answers
// for a human (or a script).
//
// Exit status: 0 on success, 1 when cfkd answered an ERROR (or the
// connection broke), 2 on a usage error or when cfkd cannot be reached.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK       = 0
	exitFailed   = 1 // cfkd refused something, or the conversation broke
	exitUsage    = 2 // bad flags or arguments
	exitNoDaemon = 2 // cfkd is not there to talk to
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one cfkctl invocation and returns its exit status. It is
// main without the process: the tests call it through a re-executed test
// binary.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	a.close()
	return a.report(cmd, err)
}

// report prints the error cmd ended with the way an operator should see it
// and returns the exit status it stands for.
func (a *app) report(cmd *cobra.Command, err error) int {
	var (
		failed *failedError
		conn   *connectError
		rerr   *runError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &failed):
		// The details were printed as they happened.
		return exitFailed
	case errors.As(err, &conn):
		fmt.Fprintf(a.stderr, "cfkctl: cannot connect to cfkd at %s: %s\n", conn.addr, reason(conn.err))
		fmt.Fprintln(a.stderr, "Is cfkd running? (start it with: cfkd)")
		return exitNoDaemon
	case errors.As(err, &rerr):
		fmt.Fprintf(a.stderr, "cfkctl: %s\n", rerr.err)
		return exitFailed
	}
	// Anything cobra returns by itself (unknown subcommand or flag, wrong
	// number of arguments) is a usage error.
	fmt.Fprintf(a.stderr, "%s: %s\n", cmd.CommandPath(), err)
	fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return exitUsage
}

// failedError says that a command failed and has already told the operator
// why (one `error: ...` line per refusal).
type failedError struct{}

func (*failedError) Error() string { return "failed" }

// errFailed is returned by commands after printing their errors.
var errFailed = &failedError{}

// runError is an error met while carrying out a well-formed command (an
// unreadable file, a broken connection), as opposed to a usage error.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// action wraps a subcommand's body so that whatever it returns counts as a
// run-time failure, not a usage error.
func action(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		var (
			failed *failedError
			conn   *connectError
		)
		if err == nil || errors.As(err, &failed) || errors.As(err, &conn) {
			return err
		}
		return &runError{err: err}
	}
}

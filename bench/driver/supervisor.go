package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// via says how a command reaches the supervisor: through the command-line
// tool an operator would type, or through the driver speaking the
// supervisor's own interface (socket, XML-RPC, control fifos) directly.
type via int

const (
	viaCLI via = iota
	viaAPI
)

func (v via) String() string {
	if v == viaCLI {
		return "CLI"
	}
	return "API"
}

// supervisor is one program under test, configured as its documentation
// says to make it fast.
type supervisor interface {
	// name is the column heading in the report.
	name() string
	// version is the version string of what was measured.
	version() string
	// tuning describes the settings used, for the report.
	tuning() string
	// launch writes the configuration for n services, all declared and
	// down, whose marker lines go to markerFile, starts the supervisor and
	// returns once it accepts commands.
	launch(dir string, n int, markerFile string) error
	// root is the pid of the supervisor's top process.
	root() int
	// startAll asks for every service to be started, and returns when the
	// command has been answered.
	startAll(v via) error
	// downAll asks for every service to be stopped.
	downAll(v via) error
	// status asks for the status of every service and returns how many
	// services the answer covered.
	status(v via) (int, error)
	// stop shuts the supervisor down and waits until it has exited.
	stop() error
}

// serviceName is the name of the i-th service, i counting from 0.
func serviceName(i int) string { return fmt.Sprintf("m%04d", i+1) }

// run runs a command to completion and returns its standard output.
// okCodes are exit codes that are not failures (supervisorctl status
// exits 3 when a service is not running).
func run(argv []string, okCodes ...int) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		for _, c := range okCodes {
			if ee.ExitCode() == c {
				err = nil
			}
		}
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(shorten(argv), " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// shorten keeps error messages readable when argv names 1000 directories.
func shorten(argv []string) []string {
	if len(argv) <= 6 {
		return argv
	}
	return append(append([]string{}, argv[:5]...), fmt.Sprintf("... (%d more)", len(argv)-5))
}

// countLines counts the non-empty lines of s.
func countLines(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

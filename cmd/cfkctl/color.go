package main

import (
	"os"
)

// ANSI escapes for the states.
const (
	ansiReset      = "\x1b[0m"
	ansiBoldRed    = "\x1b[1;31m"
	ansiBoldGreen  = "\x1b[1;32m"
	ansiBoldYellow = "\x1b[1;33m"
)

// palette colours words for the terminal, or leaves them plain.
type palette struct{ enabled bool }

// palette colours output only when stdout is a terminal and NO_COLOR
// (https://no-color.org) is unset or empty: pipes and files get plain text.
func (a *app) palette() palette {
	if os.Getenv("NO_COLOR") != "" {
		return palette{}
	}
	f, ok := a.stdout.(*os.File)
	return palette{enabled: ok && isTerminal(f)}
}

func (p palette) paint(code, s string) string {
	if !p.enabled || code == "" {
		return s
	}
	return code + s + ansiReset
}

// state colours a service state: green when it is (getting) up, yellow
// when it is (getting) down on purpose, red when something went wrong.
func (p palette) state(s string) string {
	var code string
	switch s {
	case "running", "starting":
		code = ansiBoldGreen
	case "stopped", "stopping":
		code = ansiBoldYellow
	case "fail", "backoff", "fatal":
		code = ansiBoldRed
	}
	return p.paint(code, s)
}

// proxy colours a proxy status: green up, red otherwise.
func (p palette) proxy(s string) string {
	if s == "up" {
		return p.paint(ansiBoldGreen, s)
	}
	return p.paint(ansiBoldRed, s)
}

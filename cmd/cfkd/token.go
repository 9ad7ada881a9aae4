package main

import (
	"fmt"
	"path/filepath"

	"github.com/controlfreak-go/cfk/console"
)

// consoleTokenState is the TCP console's token, if it has one.
type consoleTokenState struct {
	value   string
	created bool
}

// consoleToken reads, or creates, the token a TCP console asks for. A
// unix socket needs none (its peers' credentials are checked); one is
// still read when --token-file is given, so that `auth` is checked there
// too. The path is made absolute in o, for the detached daemon, which
// runs in /. An upgraded cfkd takes the token from the handover instead.
func consoleToken(o *options) (consoleTokenState, error) {
	a, err := console.ParseAddress(o.address)
	if err != nil {
		return consoleTokenState{}, fmt.Errorf("management socket %q: %w", o.address, err)
	}
	if a.Network != "tcp" && o.token == "" {
		return consoleTokenState{}, nil
	}
	if o.token == "" {
		o.token = filepath.Join(o.home, console.TokenFileName)
	}
	if o.token, err = filepath.Abs(o.token); err != nil {
		return consoleTokenState{}, err
	}
	value, created, err := console.EnsureToken(o.token)
	if err != nil {
		return consoleTokenState{}, fmt.Errorf("console token: %w", err)
	}
	return consoleTokenState{value: value, created: created}, nil
}

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/controlfreak-go/cfk/console"
)

// dialTimeout bounds the wait for cfkd to accept the connection; a local
// cfkd answers at once, a remote one should within this.
const dialTimeout = 5 * time.Second

// connectError says that cfkd could not be reached at addr.
type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string {
	return fmt.Sprintf("cannot connect to cfkd at %s: %v", e.addr, e.err)
}

func (e *connectError) Unwrap() error { return e.err }

// reason gives the bottom of a dial error, which is what the operator can
// act on: "connection refused", "no such file or directory".
func reason(err error) string {
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		return sys.Err.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// conn returns the connection to cfkd, dialling it on first use.
func (a *app) conn() (*console.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	addr, err := a.resolveAddress()
	if err != nil {
		return nil, err
	}
	c, err := console.Dial(addr, dialTimeout)
	if err != nil {
		return nil, &connectError{addr: addr, err: err}
	}
	if ca, _ := console.ParseAddress(addr); ca.Network == "tcp" {
		token, err := a.resolveToken(ca.Addr)
		if err != nil {
			c.Close()
			return nil, err
		}
		if token != "" {
			if err := c.Auth(token); err != nil {
				c.Close()
				return nil, fmt.Errorf("cfkd at %s refused the token (%v)", addr, err)
			}
		}
	}
	a.client, a.addr = c, addr
	return c, nil
}

// do sends one line to cfkd and returns the body of its answer. An ERROR
// answer is a *console.ServerError; anything else that goes wrong is a
// failure of the conversation itself.
func (a *app) do(line string) ([]string, error) {
	c, err := a.conn()
	if err != nil {
		return nil, err
	}
	body, err := c.Do(line)
	var serr *console.ServerError
	if err != nil && !errors.As(err, &serr) {
		return body, fmt.Errorf("talking to cfkd at %s: %w", a.addr, err)
	}
	return body, err
}

// close ends the conversation with cfkd, if there was one.
func (a *app) close() {
	if a.client != nil {
		_ = a.client.Close()
		a.client = nil
	}
}

// serverError returns the message of an ERROR answer, and whether err is one.
func serverError(err error) (string, bool) {
	var serr *console.ServerError
	if errors.As(err, &serr) {
		return serr.Msg, true
	}
	return "", false
}

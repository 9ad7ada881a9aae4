package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/controlfreak-go/cfk/console"
)

// upgradeWait bounds how long cfkctl waits for the re-executed cfkd.
const upgradeWait = 30 * time.Second

func (a *app) upgradeCommand() *cobra.Command {
	var binary string
	cmd := &cobra.Command{
		Use:   "upgrade [--binary PATH]",
		Short: "Re-execute cfkd in place (same pid), keeping every service and socket",
		Long: `Re-execute cfkd in place, from the same binary or from --binary: the pid
stays, every service stays running and cfkd's child, and no listening
socket is closed. A binary that cannot start or cannot take over leaves the
running cfkd as it was, and the error says why.`,
		GroupID: groupOther,
		Args:    cobra.NoArgs,
		RunE: action(func(*cobra.Command, []string) error {
			return a.upgrade(binary)
		}),
	}
	cmd.Flags().StringVar(&binary, "binary", "", "the cfkd binary to run (default: the one running)")
	return cmd
}

func (a *app) upgrade(binary string) error {
	if strings.ContainsAny(binary, "\r\n") {
		return errors.New("the binary path is one line")
	}
	before, err := a.request("command upgrades")
	if err != nil {
		return err
	}
	line := strings.TrimSpace("command upgrade " + binary)
	c, err := a.conn()
	if err != nil {
		return err
	}
	asked := time.Now()
	_, err = c.Do(line)
	var serr *console.ServerError
	if errors.As(err, &serr) {
		fmt.Fprintf(a.stderr, "error: %s\n", serr.Msg)
		return errFailed
	}
	// The connection closes when the old cfkd execs: from then on nobody
	// answers until the new one serves. That is the silence reported;
	// the new binary's check before it, while the old cfkd still serves,
	// is not part of it.
	start := time.Now()
	// No answer: the connection closed as cfkd re-executed. Wait for the
	// next cfkd to serve the same socket and count one more upgrade.
	a.close()
	want := 1
	if len(before) > 0 {
		n, _ := strconv.Atoi(before[0])
		want = n + 1
	}
	deadline := asked.Add(upgradeWait)
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
		body, err := a.do("command upgrades")
		if err != nil {
			a.close()
			continue
		}
		if len(body) > 0 {
			if n, _ := strconv.Atoi(body[0]); n >= want {
				fmt.Fprintf(a.stdout, "cfkd upgraded in place (upgrade %d); the console answered again after %d ms\n",
					n, time.Since(start).Milliseconds())
				return nil
			}
		}
		a.close()
	}
	return fmt.Errorf("cfkd did not come back within %v", upgradeWait)
}

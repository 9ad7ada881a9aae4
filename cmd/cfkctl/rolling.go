package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// rollPoll is how often cfkctl asks for a rolling restart's progress.
const rollPoll = 100 * time.Millisecond

// addRollingFlags gives `restart` its --rolling, --batch and --overlap
// flags.
func (a *app) addRollingFlags(cmd *cobra.Command) {
	var rolling, overlap bool
	var batch int
	cmd.Flags().BoolVar(&rolling, "rolling", false, "restart in batches, each batch ready before the next is touched")
	cmd.Flags().IntVar(&batch, "batch", 1, "with --rolling: services restarted at once")
	cmd.Flags().BoolVar(&overlap, "overlap", false,
		"with --rolling: start each new process beside the old one, which is stopped once the new one is ready (services on cfkd's sockets)")
	plain := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if overlap && !rolling {
			return errors.New("--overlap needs --rolling")
		}
		if !rolling {
			return plain(c, args)
		}
		// Usage errors are returned bare; the run itself through action.
		if batch < 1 {
			return fmt.Errorf("--batch must be at least 1")
		}
		sels, _ := selectors(args)
		if len(sels) != 1 {
			return errors.New("--rolling takes one svcref (a tag, a name or all)")
		}
		return action(func(*cobra.Command, []string) error {
			return a.rollingRestart(sels[0], batch, overlap)
		})(c, args)
	}
}

// rollingRestart starts a rolling restart in cfkd and follows it until it
// ends. cfkd carries it out: interrupting cfkctl does not stop it.
func (a *app) rollingRestart(sel string, batch int, overlap bool) error {
	req := fmt.Sprintf("command rollrestart %s %d", sel, batch)
	if overlap {
		req += " overlap"
	}
	body, err := a.request(req)
	if err != nil {
		return err
	}
	a.printLines(body)
	var id string
	if len(body) > 0 {
		// "rolling restart ID: ..."
		if f := strings.Fields(body[0]); len(f) >= 3 {
			id = strings.TrimSuffix(f[2], ":")
		}
	}
	last := ""
	for {
		rows, err := a.request("command rollstatus " + id)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return errors.New("cfkd forgot the rolling restart")
		}
		f := tabFields(rows[0], 4)
		state, progress, msg := f[1], f[2], f[3]
		if line := progress + " " + msg; line != last {
			fmt.Fprintf(a.stdout, "[%s] %s\n", progress, msg)
			last = line
		}
		switch state {
		case "done":
			return nil
		case "failed":
			fmt.Fprintf(a.stderr, "error: rolling restart stopped: %s\n", msg)
			return errFailed
		}
		time.Sleep(rollPoll)
	}
}

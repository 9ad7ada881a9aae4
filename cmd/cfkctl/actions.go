package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// serviceVerb is a subcommand that sends `command VERB SELECTOR` for each
// svcref and prints cfkd's `done N`.
type serviceVerb struct {
	name  string
	short string
}

// serviceVerbs are the service actions, in the original's order.
var serviceVerbs = []serviceVerb{
	{"up", "Make sure the services are up"},
	{"down", "Make sure the services are down"},
	{"start", "Start the services (an error for those already up)"},
	{"stop", "Stop the services (an error for those already down)"},
	{"restart", "Stop the services if they are up, then start them"},
	{"destroy", "Bring the services down and forget them"},
}

func (a *app) serviceVerbCommand(v serviceVerb) *cobra.Command {
	cmd := &cobra.Command{
		Use:               v.name + " [svcref...]",
		Short:             v.short,
		GroupID:           groupService,
		Args:              refArgs,
		ValidArgsFunction: a.completeRefs,
		RunE: action(func(_ *cobra.Command, args []string) error {
			sels, _ := selectors(args) // checked by refArgs
			return a.eachSelector(v.name, sels, a.printLines)
		}),
	}
	if v.name == "restart" {
		a.addRollingFlags(cmd)
	}
	return cmd
}

// printLines prints answer lines as cfkd gave them.
func (a *app) printLines(body []string) {
	for _, l := range body {
		fmt.Fprintln(a.stdout, l)
	}
}

// request sends one line and returns the body of the answer. An ERROR
// answer is printed as `error: MSG` and returned as errFailed.
func (a *app) request(line string) ([]string, error) {
	body, err := a.do(line)
	if msg, ok := serverError(err); ok {
		fmt.Fprintf(a.stderr, "error: %s\n", msg)
		return body, errFailed
	}
	return body, err
}

// simple sends one fixed request and prints the answer's lines.
func (a *app) simple(line string) error {
	body, err := a.request(line)
	if err != nil {
		return err
	}
	a.printLines(body)
	return nil
}

func (a *app) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the names of all services",
		GroupID: groupOther,
		Args:    cobra.NoArgs,
		RunE: action(func(*cobra.Command, []string) error {
			return a.simple("command list")
		}),
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print cfkd's version",
		GroupID: groupOther,
		Args:    cobra.NoArgs,
		RunE: action(func(*cobra.Command, []string) error {
			return a.simple("command version")
		}),
	}
}

func (a *app) shutdownCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "shutdown",
		Short:   "Stop every service and proxy, then cfkd itself",
		GroupID: groupOther,
		Args:    cobra.NoArgs,
		RunE: action(func(*cobra.Command, []string) error {
			c, err := a.conn()
			if err != nil {
				return err
			}
			_, err = c.Do("command shutdown")
			if msg, ok := serverError(err); ok {
				fmt.Fprintf(a.stderr, "error: %s\n", msg)
				return errFailed
			}
			// cfkd may close the connection before its OK reaches us: it
			// is on its way out, which is what was asked.
			return nil
		}),
	}
}

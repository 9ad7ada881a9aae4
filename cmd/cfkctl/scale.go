package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) dumpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "dump [svcref...]",
		Short: "Print the config lines that recreate the services",
		Long: `Print the lines of the language that declare the services exactly (every
attribute, tags, sockets, proxy), preceded by the sockets and proxies they
use. 'cfkctl dump > saved.conf' then 'cfkctl load saved.conf' into a fresh
cfkd gives the same services.`,
		GroupID:           groupService,
		Args:              refArgs,
		ValidArgsFunction: a.completeRefs,
		RunE: action(func(_ *cobra.Command, args []string) error {
			sels, _ := selectors(args)
			m := newMerged(func(l string) string { return l })
			err := a.eachSelector("dump", sels, m.add)
			for _, l := range m.lines {
				fmt.Fprintln(a.stdout, l)
			}
			return err
		}),
	}
}

func (a *app) scaleCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "scale @TAG N",
		Short: "Make exactly N services carry a tag, copying or removing members",
		Long: `Make exactly N services carry TAG. New services are copies of the
highest-numbered member (every attribute), named by the members' pattern
(web001, web002, ...), and are started. Shrinking stops, then destroys, the
highest-numbered ones.`,
		GroupID: groupService,
		Args: cobra.MatchAll(cobra.ExactArgs(2), func(_ *cobra.Command, args []string) error {
			if !strings.HasPrefix(args[0], "@") || len(args[0]) < 2 || strings.ContainsAny(args[0], " \t") {
				return fmt.Errorf("scale takes a tag, like @web, not %q", args[0])
			}
			if n, err := strconv.Atoi(args[1]); err != nil || n < 0 {
				return fmt.Errorf("scale needs a number of services, not %q", args[1])
			}
			return nil
		}),
		RunE: action(func(_ *cobra.Command, args []string) error {
			body, err := a.request("command scale tag " + args[0][1:] + " " + args[1])
			for _, l := range body {
				fmt.Fprintln(a.stdout, l)
			}
			return err
		}),
	}
}

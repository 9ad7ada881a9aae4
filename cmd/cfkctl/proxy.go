package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// formatProxyStatus turns a `command proxystatus` line (name, up|down,
// pid, tab separated) into `STATUS NAME PID` columns.
func formatProxyStatus(line string, p palette) string {
	f := tabFields(line, 3)
	name, status, pid := f[0], f[1], f[2]
	const statusWidth = 6
	padded := fmt.Sprintf("%-*s", statusWidth, status)
	padded = p.proxy(status) + padded[len(status):]
	return strings.TrimRight(fmt.Sprintf("%s %-20s %6s", padded, name, pid), " ")
}

func (a *app) proxyStatusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "proxystatus",
		Short:   "Print the status of the proxies",
		GroupID: groupProxy,
		Args:    cobra.NoArgs,
		RunE: action(func(*cobra.Command, []string) error {
			body, err := a.request("command proxystatus")
			if err != nil {
				return err
			}
			if asJSON {
				rows := make([]proxyJSON, 0, len(body))
				for _, l := range body {
					rows = append(rows, parseProxyStatus(l))
				}
				printJSON(a.stdout, rows)
				return nil
			}
			p := a.palette()
			for _, l := range body {
				fmt.Fprintln(a.stdout, formatProxyStatus(l, p))
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: one object per proxy")
	return cmd
}

func (a *app) proxyVerbCommand(verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:               "proxy" + verb + " PROXY",
		Short:             short,
		GroupID:           groupProxy,
		Args:              cobra.MatchAll(cobra.ExactArgs(1), oneWord("proxy name")),
		ValidArgsFunction: a.completeProxies,
		RunE: action(func(_ *cobra.Command, args []string) error {
			return a.simple("command proxy" + verb + " " + args[0])
		}),
	}
}

// oneWord checks that every argument is one word of the language, so that
// none can add words to the request it goes into.
func oneWord(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		for _, arg := range args {
			if arg == "" || strings.ContainsAny(arg, " \t\r\n") {
				return fmt.Errorf("invalid %s %q", what, arg)
			}
		}
		return nil
	}
}

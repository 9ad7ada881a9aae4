package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// socketRow is one line of `command sockets`: name, address, state, fd,
// the services using it, and its accept queue now and its limit.
type socketRow struct {
	name, addr, state, fd, services, queued, limit string
}

func parseSocketRow(line string) socketRow {
	f := strings.Split(line, "\t")
	for len(f) < 7 {
		f = append(f, "")
	}
	return socketRow{f[0], f[1], f[2], f[3], f[4], f[5], f[6]}
}

// formatSockets prints the sockets as columns with a header.
func formatSockets(lines []string) []string {
	out := []string{fmt.Sprintf("%-12s %-26s %-8s %4s %11s  %s", "NAME", "ADDRESS", "STATE", "FD", "QUEUE/LIMIT", "SERVICES")}
	for _, l := range lines {
		r := parseSocketRow(l)
		queue := ""
		if r.queued != "" {
			queue = r.queued + "/" + r.limit
		}
		out = append(out, strings.TrimRight(fmt.Sprintf("%-12s %-26s %-8s %4s %11s  %s",
			r.name, r.addr, r.state, r.fd, queue, strings.ReplaceAll(r.services, ",", ", ")), " "))
	}
	return out
}

func (a *app) socketsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "sockets [SOCKET...]",
		Short:   "List sockets: address, bound or not, fd, accept queue and limit, services",
		GroupID: groupOther,
		Args:    oneWord("socket name"),
		RunE: action(func(_ *cobra.Command, args []string) error {
			body, err := a.request(strings.TrimSpace("command sockets " + strings.Join(args, " ")))
			if err != nil {
				return err
			}
			if asJSON {
				rows := make([]socketJSON, 0, len(body))
				for _, l := range body {
					rows = append(rows, parseSocketRow(l).json())
				}
				printJSON(a.stdout, rows)
				return nil
			}
			for _, l := range formatSockets(body) {
				fmt.Fprintln(a.stdout, l)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: one object per socket")
	return cmd
}

func (a *app) socketVerbCommand(verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:     verb + " SOCKET",
		Short:   short,
		GroupID: groupOther,
		Args:    cobra.MatchAll(cobra.ExactArgs(1), oneWord("socket name")),
		RunE: action(func(_ *cobra.Command, args []string) error {
			return a.simple("command " + verb + " " + args[0])
		}),
	}
}

package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// Shell completion of arguments asks cfkd what exists. When cfkd cannot be
// reached it offers nothing rather than file names.

// completeRefs offers svcrefs: `all`, service names and @tags.
func (a *app) completeRefs(_ *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	defer a.close()
	body, err := a.do("command desc all")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	out := []cobra.Completion{selectorAll}
	tags := map[string]bool{}
	for _, l := range body {
		f := strings.SplitN(l, "\t", descFields)
		out = append(out, f[0])
		if len(f) < 2 {
			continue
		}
		for _, tag := range strings.Split(f[1], ",") {
			if tag = strings.TrimSpace(tag); tag != "" && !tags[tag] {
				tags[tag] = true
				out = append(out, "@"+tag)
			}
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeServices offers service names, for the one argument of pid.
func (a *app) completeServices(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer a.close()
	body, err := a.do("command list")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return body, cobra.ShellCompDirectiveNoFileComp
}

// completeProxies offers proxy names, for proxyup and proxydown.
func (a *app) completeProxies(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer a.close()
	body, err := a.do("command proxystatus")
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, l := range body {
		out = append(out, firstField(l))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

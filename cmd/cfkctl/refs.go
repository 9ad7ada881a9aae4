package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// selectorAll is the selector, and the svcref, that names every service.
const selectorAll = "all"

// selectors turns svcrefs into the selectors of `command VERB SELECTOR`:
// NAME is `service NAME`, @TAG is `tag TAG`, `all` is `all`. No svcref means
// all, and so does a list that contains `all` (it covers the rest).
func selectors(refs []string) ([]string, error) {
	var sels []string
	for _, ref := range refs {
		switch {
		case ref == selectorAll:
			return []string{selectorAll}, nil
		case ref == "" || strings.ContainsAny(ref, " \t\r\n"):
			// A space would smuggle a second word into the request.
			return nil, fmt.Errorf("invalid service reference %q", ref)
		case strings.HasPrefix(ref, "@"):
			if ref == "@" {
				return nil, fmt.Errorf("invalid service reference %q: no tag after @", ref)
			}
			sels = append(sels, "tag "+ref[1:])
		default:
			sels = append(sels, "service "+ref)
		}
	}
	if len(sels) == 0 {
		return []string{selectorAll}, nil
	}
	return sels, nil
}

// refArgs is the argument check of subcommands that take svcrefs: a bad one
// is a usage error.
func refArgs(_ *cobra.Command, args []string) error {
	_, err := selectors(args)
	return err
}

// eachSelector sends `command VERB SELECTOR` for each selector and hands
// each answer's body to fn. An ERROR answer is printed as `error: MSG` and
// the next selector is tried; then errFailed is returned. A broken
// conversation stops at once.
func (a *app) eachSelector(verb string, sels []string, fn func(body []string)) error {
	failed := false
	for _, sel := range sels {
		body, err := a.request("command " + verb + " " + sel)
		if err == errFailed {
			failed = true
			continue
		}
		if err != nil {
			return err
		}
		fn(body)
	}
	if failed {
		return errFailed
	}
	return nil
}

// merged collects answer lines from several requests, keeping the first
// line for each key in the order cfkd gave them: `status web @front` names
// a service once even if it matches twice.
type merged struct {
	key   func(line string) string
	seen  map[string]bool
	lines []string
}

func newMerged(key func(line string) string) *merged {
	return &merged{key: key, seen: map[string]bool{}}
}

// add takes the body of one answer.
func (m *merged) add(body []string) {
	for _, l := range body {
		k := m.key(l)
		if m.seen[k] {
			continue
		}
		m.seen[k] = true
		m.lines = append(m.lines, l)
	}
}

// firstField is the key of tab-separated lines: the service name.
// tabFields splits an answer line into its n tab-separated fields, the
// last one taking the rest; missing trailing fields are empty.
func tabFields(line string, n int) []string {
	f := strings.SplitN(line, "\t", n)
	for len(f) < n {
		f = append(f, "")
	}
	return f
}

// commaList splits a comma-separated list, dropping spaces and empty items.
func commaList(s string) []string {
	out := []string{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func firstField(line string) string {
	name, _, _ := strings.Cut(line, "\t")
	return name
}

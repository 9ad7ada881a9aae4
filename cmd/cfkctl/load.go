package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// maxLineBytes is the longest line load reads from a file; a cmd with a
// long JSON array still fits.
const maxLineBytes = 1 << 20

// basePlaceholder is replaced in loaded lines by --basedir.
const basePlaceholder = "${BASE}"

// configLine is one line of a loaded file worth sending.
type configLine struct {
	num  int // 1-based, counting every line of the file
	text string
}

// readConfig returns the lines of r to send to cfkd: blank lines and
// comment lines (the first non-space character is #) are skipped, since cfkd
// answers them `command is void`, and ${BASE} is replaced by base.
func readConfig(r io.Reader, base string) ([]configLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	var lines []configLine
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		lines = append(lines, configLine{num: n, text: strings.ReplaceAll(text, basePlaceholder, base)})
	}
	return lines, sc.Err()
}

func (a *app) loadCommand() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "load FILE|-",
		Short: "Send a configuration file to cfkd, line by line",
		Long: `Send each line of FILE (or of the standard input for -) to cfkd, skipping
blank lines and comments, with every ${BASE} replaced by --basedir (by
default the current directory). Loading stops at the first line cfkd
refuses; the lines before it have taken effect.`,
		GroupID: groupOther,
		Args:    cobra.ExactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault // file names
		},
		RunE: action(func(_ *cobra.Command, args []string) error {
			file := args[0]
			base, err := a.base()
			if err != nil {
				return err
			}
			var (
				r    io.Reader = a.stdin
				name           = "stdin"
			)
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("cannot load %s: %w", file, err)
				}
				defer f.Close()
				r, name = f, file
			}
			lines, err := readConfig(r, base)
			if err != nil {
				return fmt.Errorf("cannot load %s: %w", name, err)
			}
			for _, l := range lines {
				_, err := a.do(l.text)
				if msg, ok := serverError(err); ok {
					fmt.Fprintf(a.stderr, "error: %s:%d: %s\n", name, l.num, msg)
					return errFailed
				}
				if err != nil {
					return fmt.Errorf("%s:%d: %w", name, l.num, err)
				}
			}
			if verbose {
				fmt.Fprintf(a.stdout, "%s: %d lines loaded\n", name, len(lines))
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print how many lines were loaded")
	return cmd
}

// base is the value of ${BASE}: --basedir made absolute, since cfkd does not
// share our working directory, or the current directory.
func (a *app) base() (string, error) {
	if a.basedir == "" {
		return os.Getwd()
	}
	return filepath.Abs(a.basedir)
}

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// cfkctl logs reads cfkd's log file itself: cfkd names it (`command
// logfile`), cfkctl reads it, so following a log costs cfkd nothing and
// works across an upgrade or a restart of cfkd. It needs the file to be
// on this machine and readable, which it is for the local operator.

// logPoll is how often -f looks for new lines, a rotation or a truncation.
const logPoll = 250 * time.Millisecond

// logFilter picks the lines of some services: their output
// (service.NAME.out, service.NAME.err) and the daemon's lines that name
// them as a word ("starting web1", "child web1 exited"). A nil filter
// keeps every line.
type logFilter map[string]bool

func (f logFilter) keep(line string) bool {
	if f == nil {
		return true
	}
	// TIME PID LEVEL CATEGORY - MESSAGE
	fields := strings.SplitN(line, " ", 6)
	if len(fields) < 6 {
		return false
	}
	category, msg := fields[3], fields[5]
	if rest, ok := strings.CutPrefix(category, "service."); ok {
		i := strings.LastIndexByte(rest, '.')
		return i > 0 && f[rest[:i]]
	}
	if category != "cfkd" {
		return false
	}
	for _, w := range strings.FieldsFunc(msg, func(r rune) bool {
		return r == ' ' || r == '\'' || r == '"' || r == ',' || r == ':' || r == '(' || r == ')'
	}) {
		if f[w] {
			return true
		}
	}
	return false
}

func (a *app) logsCommand() *cobra.Command {
	var lines int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [svcref...]",
		Short: "Print the end of cfkd's log, or of some services' lines in it; -f follows it",
		Long: `Print the last lines of cfkd's log: with svcrefs, only the output of those
services and the daemon's lines that name them — or, for services with a
log_file, that file (the daemon's lines stay in cfkd's log). -f then follows
the file as it grows, across a rotation (a new file at the same path) or a
truncation, until interrupted. cfkctl reads the file itself, so it must run
on cfkd's machine.`,
		GroupID:           groupOther,
		Args:              refArgs,
		ValidArgsFunction: a.completeRefs,
		RunE: action(func(c *cobra.Command, args []string) error {
			if lines < 0 {
				return fmt.Errorf("-n must be 0 or more")
			}
			var filter logFilter
			if sels, _ := selectors(args); len(args) > 0 && !(len(sels) == 1 && sels[0] == selectorAll) {
				filter = logFilter{}
				if err := a.eachSelector("status", sels, func(body []string) {
					for _, l := range body {
						filter[firstField(l)] = true
					}
				}); err != nil {
					return err
				}
			}
			path, err := a.logPath(filter)
			if err != nil {
				return err
			}
			a.close() // nothing more to ask cfkd while following
			f, err := os.Open(path)
			if err != nil {
				return &runError{fmt.Errorf("cannot read cfkd's log (is cfkctl on cfkd's machine?): %w", err)}
			}
			defer func() { f.Close() }()
			last, end, err := lastLines(f, lines, filter)
			if err != nil {
				return &runError{fmt.Errorf("read %s: %w", path, err)}
			}
			for _, l := range last {
				fmt.Fprintln(a.stdout, l)
			}
			if !follow {
				return nil
			}
			return a.followLog(c, path, f, end, filter)
		}),
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 20, "how many lines to print first")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "then print new lines as they come")
	return cmd
}

// logPath asks cfkd which file to read: its log, or, for services with a
// log_file, theirs. Services that write to different files cannot be
// followed as one.
func (a *app) logPath(filter logFilter) (string, error) {
	if filter == nil {
		return a.oneLine("command logfile")
	}
	files := map[string][]string{}
	var order []string
	for name := range filter {
		p, err := a.oneLine("command logfile " + name)
		if err != nil {
			return "", err
		}
		if files[p] == nil {
			order = append(order, p)
		}
		files[p] = append(files[p], name)
	}
	if len(order) == 1 {
		return order[0], nil
	}
	if len(order) == 0 {
		return a.oneLine("command logfile")
	}
	sort.Strings(order)
	var where []string
	for _, p := range order {
		sort.Strings(files[p])
		where = append(where, strings.Join(files[p], ", ")+": "+p)
	}
	return "", &runError{fmt.Errorf("these services write to different files; ask for one file's services at a time (%s)", strings.Join(where, "; "))}
}

// oneLine sends a request that answers one line.
func (a *app) oneLine(req string) (string, error) {
	body, err := a.request(req)
	if err != nil {
		return "", err
	}
	if len(body) != 1 {
		return "", &runError{fmt.Errorf("cfkd answered %q to %s", body, req)}
	}
	return body[0], nil
}

// lastLines returns the last n lines of f that filter keeps, reading
// backwards from the end in blocks, and the offset of the end it read to
// (a line still being written there is left for follow).
func lastLines(f *os.File, n int, filter logFilter) ([]string, int64, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	const block = 64 << 10
	var kept []string
	// chunks holds, in file order, the pieces of a line whose start lies
	// in a block not read yet; they are joined once, when it is found, so
	// a huge line costs its length, not its length squared.
	var chunks [][]byte
	end := int64(-1) // just after the file's last "\n", once found
	line := func(seg []byte) {
		l := seg
		if len(chunks) > 0 {
			l = bytes.Join(append([][]byte{seg}, chunks...), nil)
			chunks = nil
		}
		if len(l) > 0 && len(kept) < n && filter.keep(string(l)) {
			kept = append(kept, string(l))
		}
	}
	pos := info.Size()
	for pos > 0 && (end < 0 || len(kept) < n) {
		size := min(int64(block), pos)
		pos -= size
		buf := make([]byte, size)
		if _, err := f.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, err
		}
		for {
			i := bytes.LastIndexByte(buf, '\n')
			if i < 0 {
				chunks = append([][]byte{buf}, chunks...)
				break
			}
			if end < 0 {
				// What follows the last line end is a line still being
				// written: not a line yet.
				end = pos + int64(i) + 1
				chunks = nil
			} else {
				line(buf[i+1:])
			}
			buf = buf[:i]
			if len(kept) >= n {
				break
			}
		}
	}
	if pos == 0 && end >= 0 && len(kept) < n {
		line(nil) // the file's first line
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	if end < 0 {
		end = 0
	}
	return kept, end, nil
}

// followLog prints the lines filter keeps as they are appended to path,
// from offset on, until the command's context ends (Ctrl-C ends cfkctl).
func (a *app) followLog(c *cobra.Command, path string, f *os.File, offset int64, filter logFilter) error {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return &runError{err}
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var partial strings.Builder
	for {
		line, err := r.ReadString('\n')
		partial.WriteString(line)
		if err == nil {
			if l := strings.TrimSuffix(partial.String(), "\n"); filter.keep(l) {
				fmt.Fprintln(a.stdout, l)
			}
			partial.Reset()
			continue
		}
		if !errors.Is(err, io.EOF) {
			return &runError{fmt.Errorf("read %s: %w", path, err)}
		}
		if flusher, ok := a.stdout.(interface{ Sync() error }); ok {
			_ = flusher.Sync()
		}
		select {
		case <-c.Context().Done():
			return nil
		case <-time.After(logPoll):
		}
		// Rotated (another file at the path) or truncated: start over on
		// what is at the path now.
		cur, err := os.Stat(path)
		if err != nil {
			continue // between the rename and the new file
		}
		old, _ := f.Stat()
		pos, _ := f.Seek(0, io.SeekCurrent)
		if !os.SameFile(cur, old) || cur.Size() < pos {
			nf, err := os.Open(path)
			if err != nil {
				continue
			}
			if os.SameFile(cur, old) {
				// Truncated in place: the same file from its start.
				nf.Close()
				_, _ = f.Seek(0, io.SeekStart)
			} else {
				// Finish the old file first: lines written before the
				// rename belong before the new file's.
				rest, _ := io.ReadAll(r)
				partial.Write(rest)
				for _, l := range strings.SplitAfter(partial.String(), "\n") {
					if strings.HasSuffix(l, "\n") && filter.keep(strings.TrimSuffix(l, "\n")) {
						fmt.Fprintln(a.stdout, strings.TrimSuffix(l, "\n"))
					}
				}
				f.Close()
				f = nf
			}
			partial.Reset()
			r.Reset(f)
		}
	}
}

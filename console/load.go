package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// LoadError is the first error met while loading a config file: where it
// happened and what the Handler or the parser said.
type LoadError struct {
	File string // the name given to Load
	Line int    // 1-based
	Msg  string
}

func (e *LoadError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Load executes a config file: each line goes through Parse and h, exactly
// as if it were sent to the socket, except that empty and comment-only
// lines are skipped and an unterminated last line is executed. It stops at
// the first line that fails, with a *LoadError naming the file (name) and
// the line. n is how many lines were executed successfully.
//
// Unlike the server, Load does not recover a panic in h: it runs when cfkd
// starts, where a crash with its stack is the most useful report of a bug.
//
// Lines longer than DefaultMaxLineBytes are errors, so that a file that
// loads here can also be sent line by line with `cfkctl load`.
func Load(r io.Reader, name string, h Handler) (n int, err error) {
	lines := lineReader{r: bufio.NewReader(r), max: DefaultMaxLineBytes, lastLine: true}
	for lineNo := 1; ; lineNo++ {
		line, err := lines.next()
		switch {
		case errors.Is(err, io.EOF):
			return n, nil
		case errors.Is(err, errLineTooLong):
			return n, &LoadError{File: name, Line: lineNo, Msg: fmt.Sprintf("line too long (limit %d bytes)", lines.max)}
		case err != nil:
			return n, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		req, err := Parse(string(line))
		if errors.Is(err, ErrVoid) {
			continue
		}
		if err == nil {
			_, err = h.Execute(req)
		}
		if err != nil {
			return n, &LoadError{File: name, Line: lineNo, Msg: err.Error()}
		}
		n++
	}
}

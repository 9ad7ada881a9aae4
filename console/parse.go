package console

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrVoid is the answer to a line that holds nothing once its comment and
// surrounding whitespace are gone. A config file skips such lines; the
// socket answers them `ERROR: command is void`, as the original did.
var ErrVoid = errors.New("command is void")

// maxEchoBytes bounds how much of a bad line an error message quotes back:
// a 64 KiB malformed line gets a one-line answer, not a 64 KiB one.
const maxEchoBytes = 256

// Parse reads one line of the language (SPEC 1.3): a declaration
// `service|socket|proxy NAME ATTR=VALUE`, `proxy NAME service SVC
// ATTR=VALUE`, or `command VERB [ARGS...]`. Config files and the socket
// both go through it.
//
// Parse knows the shape of a line, not its meaning: it checks names but not
// attribute names, verbs or values, which the Handler judges. A line that is
// empty or only a comment gives ErrVoid.
func Parse(line string) (Request, error) {
	line = trimSpace(stripComment(line))
	if line == "" {
		return Request{}, ErrVoid
	}
	// Nothing can carry these: exec arguments, environment entries and
	// paths are C strings, and a request is a single line.
	if strings.IndexByte(line, 0) >= 0 {
		return Request{}, errors.New("command contains a NUL byte")
	}
	if strings.IndexByte(line, '\n') >= 0 {
		return Request{}, errors.New("command spans several lines")
	}

	kw, rest := cutSpace(line)
	switch kw {
	case "service":
		return parseService(rest)
	case "socket":
		return parseSocket(rest)
	case "proxy":
		return parseProxy(rest)
	case "command":
		return parseCommand(rest)
	}
	return Request{}, fmt.Errorf("unknown command '%s'", echo(kw))
}

func parseService(rest string) (Request, error) {
	if rest == "" {
		return Request{}, errors.New("empty service command")
	}
	name, attr, value, ok := splitDecl(rest)
	if !ok {
		return Request{}, malformed("service", rest)
	}
	if !isIdent(name) {
		return Request{}, errors.New("service name is invalid")
	}
	return Request{Kind: KindService, Name: name, Attr: attr, Value: cleanValue(value)}, nil
}

func parseSocket(rest string) (Request, error) {
	if rest == "" {
		return Request{}, errors.New("empty socket command")
	}
	name, attr, value, ok := splitDecl(rest)
	if !ok {
		return Request{}, malformed("socket", rest)
	}
	// splitDecl only returns words, so this cannot fail today; it states
	// the rule where a reader looks for it.
	if !isWord(name) {
		return Request{}, errors.New("socket name is invalid")
	}
	return Request{Kind: KindSocket, Name: name, Attr: attr, Value: cleanValue(value)}, nil
}

// parseProxy reads `NAME ATTR=VALUE` or `NAME service SVC ATTR=VALUE`.
// The assignment form is tried first, so `p cmd = x` (spaces around `=`)
// is an attribute of the proxy: the original tried the sub-form first and
// took `cmd` for a sub-command.
func parseProxy(rest string) (Request, error) {
	if rest == "" {
		return Request{}, errors.New("empty proxy command")
	}
	if name, attr, value, ok := splitDecl(rest); ok {
		if !isWord(name) {
			return Request{}, errors.New("proxy name is invalid")
		}
		return Request{Kind: KindProxy, Name: name, Attr: attr, Value: cleanValue(value)}, nil
	}

	name, i := scanWord(rest, 0)
	j := skipSpace(rest, i)
	sub, k := scanWord(rest, j)
	l := skipSpace(rest, k)
	if name == "" || j == i || sub != "service" || l == k {
		return Request{}, malformed("proxy", rest)
	}
	svc, attr, value, ok := splitDecl(rest[l:])
	if !ok {
		return Request{}, malformed("proxy", rest)
	}
	if !isWord(name) {
		return Request{}, errors.New("proxy name is invalid")
	}
	if !isIdent(svc) {
		return Request{}, errors.New("service name is invalid")
	}
	return Request{Kind: KindProxyService, Name: name, Service: svc, Attr: attr, Value: cleanValue(value)}, nil
}

func parseCommand(rest string) (Request, error) {
	words := fields(rest)
	if len(words) == 0 {
		return Request{}, errors.New("empty command")
	}
	r := Request{Kind: KindCommand, Verb: words[0]}
	if len(words) > 1 {
		r.Args = words[1:]
	}
	return r, nil
}

func malformed(kind, rest string) error {
	return fmt.Errorf("malformed %s command '%s'", kind, echo(rest))
}

// splitDecl splits `NAME ATTR=VALUE` as the original's regex
// `^([\w-]+)\s+([\w-]+)\s*=(.*)$` did. The three character classes are
// disjoint, so a left-to-right scan finds the only possible match. value
// is everything after the first `=`, uncleaned.
func splitDecl(s string) (name, attr, value string, ok bool) {
	name, i := scanWord(s, 0)
	j := skipSpace(s, i)
	attr, k := scanWord(s, j)
	k = skipSpace(s, k)
	if name == "" || j == i || attr == "" || k == len(s) || s[k] != '=' {
		return "", "", "", false
	}
	return name, attr, s[k+1:], true
}

// cleanValue drops the value's leading whitespace and, when it starts with
// a quote, keeps what lies between that quote and the last one of the same
// kind: the original's greedy `^"(.*)"` / `^'(.*)'`. A JSON array such as
// `["a","b"]` does not start with a quote and is kept verbatim.
func cleanValue(v string) string {
	v = strings.TrimLeft(v, spaceChars)
	if v != "" && (v[0] == '"' || v[0] == '\'') {
		if end := strings.LastIndexByte(v, v[0]); end > 0 {
			v = v[1:end]
		}
	}
	return v
}

// stripComment cuts s at the first `#` that begins a word (at the start of
// the line or after whitespace) and is not inside quotes.
//
// A quote counts only where a quoted word can start: at the start of the
// line, after whitespace, or right after `=`, `[` or `,` (a value, a JSON
// array's element). It runs to the next quote of the same kind; inside
// double quotes a backslash escapes the next character, as in JSON and the
// shell. A quote that is never closed is an ordinary character. So
// `desc=Bob's box # note` loses its comment, while `cmd=sh -c 'a # b'` and
// `cmd=["sh","-c","echo \"#1\" # x"]` keep their text whole.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '#' && (i == 0 || isSpace(s[i-1])):
			return s[:i]
		case (c == '"' || c == '\'') && opensQuote(s, i):
			if end := closingQuote(s, i); end > 0 {
				i = end
			}
		}
	}
	return s
}

func opensQuote(s string, i int) bool {
	if i == 0 {
		return true
	}
	switch p := s[i-1]; p {
	case '=', '[', ',':
		return true
	default:
		return isSpace(p)
	}
}

// closingQuote returns the index of the quote closing the one at s[open],
// or -1.
func closingQuote(s string, open int) int {
	q := s[open]
	for i := open + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if q == '"' {
				i++ // skip the escaped character
			}
		case q:
			return i
		}
	}
	return -1
}

// spaceChars is Perl's \s on a byte string: what the original split and
// trimmed on. Bytes above 0x7f are never whitespace here.
const spaceChars = " \t\n\v\f\r"

func isSpace(c byte) bool { return strings.IndexByte(spaceChars, c) >= 0 }

func trimSpace(s string) string { return strings.Trim(s, spaceChars) }

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// cutSpace splits s at its first run of whitespace (Perl's
// `split /\s+/, $s, 2`); s has no leading whitespace.
func cutSpace(s string) (first, rest string) {
	i := strings.IndexAny(s, spaceChars)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[skipSpace(s, i):]
}

// fields splits s on runs of whitespace.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r < utf8.RuneSelf && isSpace(byte(r)) })
}

// isWordByte is the original's name class `[\w-]`: ASCII letters, digits,
// `_` and `-`.
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// scanWord returns the run of word bytes starting at s[i] and the index
// after it.
func scanWord(s string, i int) (string, int) {
	j := i
	for j < len(s) && isWordByte(s[j]) {
		j++
	}
	return s[i:j], j
}

// isWord reports whether s is a socket, proxy or attribute name:
// `[A-Za-z0-9_-]+`.
func isWord(s string) bool {
	w, end := scanWord(s, 0)
	return w != "" && end == len(s)
}

// isIdent reports whether s is a service name: `[A-Za-z_][A-Za-z0-9_]*`.
// Service names end up in environment values and log categories
// (`service.NAME.out`), hence the stricter rule.
func isIdent(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '-' || !isWordByte(c) {
			return false
		}
	}
	return true
}

// echo prepares part of a bad line to be quoted back in an error: control
// characters and bytes that are not UTF-8 become `?` (an answer must not
// drive the operator's terminal), and it is cut after maxEchoBytes.
func echo(s string) string {
	cut := false
	if len(s) > maxEchoBytes {
		s, cut = s[:maxEchoBytes], true
	}
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// String renders r as a line of the language that Parse reads back as r.
// A value is quoted when it has to be: when it has whitespace at either
// end, starts with a quote, or holds a `#`. A value
// that holds both kinds of quote and a `#` cannot be written so that
// Parse gives it back; String then does its best.
func (r Request) String() string {
	switch r.Kind {
	case KindService, KindSocket, KindProxy:
		return r.Kind.String() + " " + r.Name + " " + r.Attr + "=" + quoteValue(r.Value)
	case KindProxyService:
		return "proxy " + r.Name + " service " + r.Service + " " + r.Attr + "=" + quoteValue(r.Value)
	case KindCommand:
		return strings.Join(append([]string{"command", r.Verb}, r.Args...), " ")
	}
	return ""
}

func quoteValue(v string) string {
	if v == "" {
		return v
	}
	plain := !isSpace(v[0]) && !isSpace(v[len(v)-1]) &&
		v[0] != '"' && v[0] != '\'' && strings.IndexByte(v, '#') < 0
	if plain {
		return v
	}
	// Inside double quotes a backslash escapes the closing quote when the
	// comment scanner looks for it: avoid them when the value ends in one.
	if strings.IndexByte(v, '"') < 0 && !endsInOddBackslashes(v) {
		return `"` + v + `"`
	}
	if strings.IndexByte(v, '\'') < 0 {
		return "'" + v + "'"
	}
	return `"` + v + `"`
}

func endsInOddBackslashes(s string) bool {
	n := len(s) - len(strings.TrimRight(s, `\`))
	return n%2 == 1
}

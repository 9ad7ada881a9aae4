package console

import (
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics, that its errors fit on one
// clean ERROR line, and that what it accepts String writes back in a form
// Parse reads as the same Request. The seed corpus in
// testdata/fuzz/FuzzParse holds the example lines of the SPEC and the
// original tutorial.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, line string) {
		req, err := Parse(line)
		if err != nil {
			if !reflect.DeepEqual(req, Request{}) {
				t.Errorf("Parse(%q) failed with %q but returned %#v", line, err, req)
			}
			msg := err.Error()
			if msg == "" || !utf8.ValidString(msg) || strings.IndexFunc(msg, unicode.IsControl) >= 0 {
				t.Errorf("Parse(%q): error %q is not one clean line", line, msg)
			}
			return
		}
		checkRequest(t, line, req)

		if !renderable(req) {
			return
		}
		text := req.String()
		back, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q) = %#v\nbut its rendering %q fails: %v", line, req, text, err)
		}
		if !reflect.DeepEqual(back, req) {
			t.Fatalf("Parse(%q) = %#v\nbut its rendering %q gives %#v", line, req, text, back)
		}
	})
}

// checkRequest states what every parsed Request satisfies.
func checkRequest(t *testing.T, line string, r Request) {
	t.Helper()
	switch r.Kind {
	case KindService, KindSocket, KindProxy, KindProxyService:
		ok := isWord(r.Name) && isWord(r.Attr) && r.Verb == "" && r.Args == nil
		if r.Kind == KindService {
			ok = ok && isIdent(r.Name)
		}
		if r.Kind == KindProxyService {
			ok = ok && isIdent(r.Service)
		} else {
			ok = ok && r.Service == ""
		}
		if !ok {
			t.Errorf("Parse(%q) = %#v: bad names", line, r)
		}
	case KindCommand:
		if r.Verb == "" || r.Name != "" || r.Attr != "" || r.Value != "" || (r.Args != nil && len(r.Args) == 0) {
			t.Errorf("Parse(%q) = %#v: bad command", line, r)
		}
		for _, w := range append([]string{r.Verb}, r.Args...) {
			if w == "" || strings.ContainsAny(w, spaceChars) {
				t.Errorf("Parse(%q) = %#v: bad word %q", line, r, w)
			}
		}
	default:
		t.Errorf("Parse(%q) = %#v: no kind", line, r)
	}
	if strings.ContainsAny(r.Value, "\x00\n") {
		t.Errorf("Parse(%q) = %#v: value holds a NUL or newline", line, r)
	}
}

// renderable reports whether String can write r so that Parse gives it
// back. The one value it cannot write holds a `#` that would start a
// comment, plus both kinds of quote (or a single quote and a trailing
// backslash, which would escape a closing double quote), so no quoting
// protects the `#`.
func renderable(r Request) bool {
	v := r.Value
	commentish := false
	for i := 1; i < len(v); i++ {
		if v[i] == '#' && isSpace(v[i-1]) {
			commentish = true
		}
	}
	return !commentish || !strings.Contains(v, "'") ||
		!strings.Contains(v, `"`) && !endsInOddBackslashes(v)
}

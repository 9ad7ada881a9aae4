package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAge(t *testing.T) {
	zone := time.FixedZone("CET", 3600)
	now := time.Date(2024, 3, 10, 10, 0, 0, 0, zone)
	tests := []struct {
		t    time.Time
		want string
	}{
		{now, "0 seconds ago"},
		{now.Add(3 * time.Second), "0 seconds ago"}, // clock skew
		{now.Add(-time.Second), "1 second ago"},
		{now.Add(-59 * time.Second), "59 seconds ago"},
		{now.Add(-time.Minute), "1 minute ago"},
		{now.Add(-5*time.Minute - 30*time.Second), "5 minutes ago"},
		{now.Add(-time.Hour + time.Second), "59 minutes ago"},
		{now.Add(-time.Hour), "1 hour ago"},
		{now.Add(-23*time.Hour - 59*time.Minute), "23 hours ago"},
		{time.Date(2024, 3, 9, 9, 0, 0, 0, zone), "yesterday"},
		{time.Date(2024, 3, 8, 23, 0, 0, 0, zone), "2 days ago"},
		{time.Date(2024, 3, 6, 11, 0, 0, 0, zone), "4 days ago"},
		{time.Date(2024, 2, 29, 11, 0, 0, 0, zone), "10 days ago"},
		// The day is counted in now's zone: 22:30 UTC on the 8th is
		// 23:30 on the 8th in CET.
		{time.Date(2024, 3, 8, 22, 30, 0, 0, time.UTC), "2 days ago"},
	}
	for _, tt := range tests {
		if got := age(now, tt.t); got != tt.want {
			t.Errorf("age(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestSelectors(t *testing.T) {
	tests := []struct {
		refs    []string
		want    []string
		wantErr bool
	}{
		{nil, []string{"all"}, false},
		{[]string{"all"}, []string{"all"}, false},
		{[]string{"web", "all", "@x"}, []string{"all"}, false},
		{[]string{"s1"}, []string{"service s1"}, false},
		{[]string{"@front", "s1"}, []string{"tag front", "service s1"}, false},
		{[]string{"@"}, nil, true},
		{[]string{""}, nil, true},
		{[]string{"s1 extra"}, nil, true},
		{[]string{"@a\tb"}, nil, true},
	}
	for _, tt := range tests {
		got, err := selectors(tt.refs)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("selectors(%q) = %q, %v; want %q, error %v", tt.refs, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReadConfig(t *testing.T) {
	in := "#!comment\n\n  # indented\nservice a cmd=${BASE}/a ${BASE}\r\n\t\nsocket s host=0.0.0.0 # not a comment line\n  command up all"
	got, err := readConfig(strings.NewReader(in), "/b")
	if err != nil {
		t.Fatal(err)
	}
	want := []configLine{
		{4, "service a cmd=/b/a /b"},
		{6, "socket s host=0.0.0.0 # not a comment line"},
		{7, "  command up all"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("readConfig = %+v, want %+v", got, want)
	}

	if _, err := readConfig(strings.NewReader(strings.Repeat("x", maxLineBytes+1)), "/"); err == nil {
		t.Error("an over-long line was read")
	}
}

func TestFormatDesc(t *testing.T) {
	tests := []struct{ line, want string }{
		{"s1\tweb, db\tmy \"app\"\torig\t[\"perl\",\"x.pl\"]",
			`s1: tags="web, db" desc="my \"app\"" proxy="orig" cmd="[\"perl\",\"x.pl\"]"`},
		{"s2\t\t\t\t", "s2:"},
		{"s3", "s3:"},
		{"s4\t\t\t\tsh -c 'a b'\tready", `s4: cmd="sh -c 'a b'" status="ready"`},
	}
	for _, tt := range tests {
		if got := formatDesc(tt.line); got != tt.want {
			t.Errorf("formatDesc(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestStatusColours(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		line string
		want string // prefix, up to the name
	}{
		{"a\trunning\t1\t1699999990\t\t\t\t", "\x1b[1;32mrunning\x1b[0m  a "},
		{"a\tstarting\t1\t1699999990\t\t\t\t", "\x1b[1;32mstarting\x1b[0m a "},
		{"a\tstopped\t\t\t\t\t\t", "\x1b[1;33mstopped\x1b[0m  a"},
		{"a\tstopping\t1\t1699999990\t\t\t\t", "\x1b[1;33mstopping\x1b[0m a "},
		{"a\tfatal\t\t1699999990\t\t\t\t", "\x1b[1;31mfatal\x1b[0m    a "},
		{"a\tbackoff\t\t1699999990\t\t\t\t", "\x1b[1;31mbackoff\x1b[0m  a "},
		{"a\tfail\t\t1699999990\t\t\t\t", "\x1b[1;31mfail\x1b[0m     a "},
		{"a\tweird\t\t\t\t\t\t", "weird    a"},
	}
	for _, tt := range tests {
		got := parseStatus(tt.line).format(now, palette{enabled: true})
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("format(%q) = %q, want prefix %q", tt.line, got, tt.want)
		}
		plain := parseStatus(tt.line).format(now, palette{})
		if strings.Contains(plain, "\x1b") {
			t.Errorf("plain format(%q) = %q has escapes", tt.line, plain)
		}
	}
	if got, want := formatProxyStatus("p\tup\t9", palette{enabled: true}), "\x1b[1;32mup\x1b[0m     p                         9"; got != want {
		t.Errorf("proxy status %q, want %q", got, want)
	}
}

func TestStatusShowsLaterTime(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	// Stopped after it started: the stop time. Restarted after a stop: the
	// start time.
	for line, want := range map[string]string{
		"a\tstopped\t\t1699990000\t1699999000\t\t\t":  "16 minutes ago (" + time.Unix(1699999000, 0).Local().Format(time.ANSIC) + ")",
		"a\trunning\t1\t1699999000\t1699990000\t\t\t": "16 minutes ago (" + time.Unix(1699999000, 0).Local().Format(time.ANSIC) + ")",
		"a\tfail\t\t1699999000.5\t\t\tKilled\t":       "(" + time.Unix(1699999000, 0).Local().Format(time.ANSIC) + ")  Killed",
	} {
		if got := parseStatus(line).format(now, palette{}); !strings.HasSuffix(got, want) {
			t.Errorf("format(%q) = %q, want suffix %q", line, got, want)
		}
	}
}

// FuzzStatusLine feeds cfkd-side text to the status, desc and proxystatus
// formatters: whatever cfkd says, cfkctl must not crash.
func FuzzStatusLine(f *testing.F) {
	f.Add("web\trunning\t12\t1700000000\t\torig!\t\tcmd")
	f.Add("\t\t\t-1\t1e300\t!\t\t")
	f.Add("x")
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, line string) {
		_ = parseStatus(line).format(now, palette{enabled: true})
		_ = formatDesc(line)
		_ = formatProxyStatus(line, palette{enabled: true})
	})
}

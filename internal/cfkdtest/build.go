package cfkdtest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

// Program is a Go program the tests run (cfkd, an example proxy), built
// on first use, once per test binary, without the race detector (what an
// operator would run, and what a memory test should measure), into a
// temporary directory that Main removes.
type Program struct {
	// Package is the import path, or a path relative to the test's
	// directory ("./example").
	Package string

	once sync.Once
	bin  string
	err  error
}

// cfkd is the daemon Start runs.
var cfkd = &Program{Package: "github.com/controlfreak-go/cfk/cmd/cfkd"}

// builds are the directories of the programs built so far.
var builds struct {
	mu   sync.Mutex
	dirs []string
}

// Build builds the program the first time and returns its binary's path.
func (p *Program) Build() (string, error) {
	p.once.Do(func() { p.bin, p.err = p.build() })
	return p.bin, p.err
}

func (p *Program) build() (string, error) {
	name := path.Base(p.Package)
	dir, err := os.MkdirTemp("", "cfkdtest-"+name)
	if err != nil {
		return "", err
	}
	builds.mu.Lock()
	builds.dirs = append(builds.dirs, dir)
	builds.mu.Unlock()
	bin := filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", bin, p.Package).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", p.Package, err, out)
	}
	return bin, nil
}

// Path is Build for a test: a program that does not build fails it.
func (p *Program) Path(t testing.TB) string {
	t.Helper()
	bin, err := p.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Main runs the tests, removes the programs they built, and exits with
// the tests' status: a TestMain for the packages that use this one.
func Main(m *testing.M) {
	code := m.Run()
	builds.mu.Lock()
	for _, dir := range builds.dirs {
		os.RemoveAll(dir)
	}
	builds.mu.Unlock()
	os.Exit(code)
}

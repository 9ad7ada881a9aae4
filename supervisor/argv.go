package supervisor

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
)

// shellMeta are the characters that make Perl's exec hand a command
// string to /bin/sh instead of splitting it itself.
const shellMeta = "$&*(){}[]'\";\\|?<>~`\n"

// Argv turns a declared command into the argv to exec, the way Perl's exec
// does (SPEC 1.3): a JSON array is used as is; a string with no shell
// metacharacters is split on whitespace and exec'd directly, so the
// service's pid is the program's own; anything else runs under /bin/sh -c.
func (c *Config) Argv() []string { return commandArgv(c.Cmd, c.CmdArgv) }

// commandArgv applies Perl's exec rule to a declared command, a string or
// a JSON array.
func commandArgv(cmd string, argv []string) []string {
	if len(argv) > 0 {
		return append([]string(nil), argv...)
	}
	if needsShell(cmd) {
		return []string{"/bin/sh", "-c", cmd}
	}
	return strings.Fields(cmd)
}

func needsShell(cmd string) bool {
	if strings.ContainsAny(cmd, shellMeta) {
		return true
	}
	words := strings.Fields(cmd)
	if len(words) == 0 {
		return true
	}
	first := words[0]
	if first == "exec" || first == "." {
		return true
	}
	// A leading VAR=value word is an environment assignment for the shell.
	if i := strings.IndexByte(first, '='); i > 0 {
		return true
	}
	return false
}

// lookPath finds prog in the PATH of the child's environment, as execvp
// would in the child.
func lookPath(prog string, env []string) (string, error) {
	if strings.Contains(prog, "/") {
		if _, err := exec.LookPath(prog); err != nil {
			return "", cleanExecErr(err)
		}
		return prog, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			path = kv[5:]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, prog)
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("command not found in PATH")
}

func cleanExecErr(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

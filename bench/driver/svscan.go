package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// scanner is a daemontools-style supervision tree: a scanner process
// (runsvdir, s6-svscan) that runs one small supervisor (runsv,
// s6-supervise) per service directory. Both take the one-letter commands
// of daemontools on each service's supervise/control fifo ("u" up, "d"
// down) and keep the state in supervise/status.
//
// Each service directory holds `run`, a symlink to the marker, and a
// `down` file, so that the tree comes up with every service declared and
// down, like the other supervisors, and `start all` is a command. The
// marker takes its output file from MARKER_FILE, set in the scanner's
// environment and inherited down the tree; no shell runs between the
// supervisor and the service, as with cfkd's JSON cmd and supervisord's
// command=.
//
// s6 also gets readiness notification: s6-supervise 2.11 restarts a dead
// service at once only if it had been ready for over a second, and waits
// a second otherwise (documented in s6-supervise.html). The marker writes
// the newline to the fd named by notification-fd.
type scanner struct {
	flavor   string // "runit" or "s6"
	script   string // run file: "" the marker itself, "sh" or "execline" a script exec'ing it
	dir      string
	scandir  string
	services []string // absolute paths of the service directories
	p        *benchkit.Child
}

// s6NotificationFd is the fd s6-supervise gives the service for its
// readiness line; any fd above 2 would do.
const s6NotificationFd = "3"

func (s *scanner) name() string {
	if s.script != "" {
		return s.flavor + " (" + s.script + " run)"
	}
	return s.flavor
}

func (s *scanner) version() string {
	pkg := s.flavor
	out, err := run([]string{"dpkg-query", "-W", "-f", "${Version}", pkg})
	if err != nil {
		return "(unknown)"
	}
	return pkg + " " + strings.TrimSpace(out) + " (Debian package)"
}

func (s *scanner) tuning() string {
	run := "`run` = symlink to the marker (no shell)"
	switch s.script {
	case "sh":
		run = "`run` = `#!/bin/sh` + `exec marker`"
	case "execline":
		run = "`run` = `#!/usr/bin/execlineb -P` + `marker`"
	}
	return strings.Replace(s.tuningText(), "`run` = symlink to the marker (no shell)", run, 1)
}

func (s *scanner) tuningText() string {
	if s.flavor == "runit" {
		return "`runsvdir SCANDIR`; each service dir: `run` = symlink to the marker (no shell), " +
			"`down` file (declared down), no `finish`, no `log/`. MARKER_FILE in runsvdir's " +
			"environment. `start all` = `sv up DIR...` (one sv process, 1000 arguments) / " +
			"writing `u` to each `supervise/control`. runsvdir starts at most 1000 services."
	}
	return "`s6-svscan -c 2N SCANDIR` (default limit is 500 services); each service dir: " +
		"`run` = symlink to the marker (no shell), `down` file, `notification-fd` = 3 (the " +
		"marker writes its readiness newline there right after its start line: without " +
		"readiness, s6-supervise 2.11 always waits 1 s before a restart), no `finish`, no " +
		"`log/`. MARKER_FILE and MARKER_READY_FD in s6-svscan's environment (s6-supervise " +
		"passes the service name as argv[1], so the marker reads MARKER_FILE first). " +
		"`start all` = `s6-svc -u DIR` for each dir (s6-svc takes one dir; a `/bin/sh` " +
		"loop) / writing `u` to each `supervise/control`."
}

func (s *scanner) launch(dir string, n int, markerFile string) error {
	s.dir = dir
	s.scandir = filepath.Join(dir, "scan")
	s.services = s.services[:0]
	for i := 0; i < n; i++ {
		d := filepath.Join(s.scandir, serviceName(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := s.writeRun(filepath.Join(d, "run")); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "down"), nil, 0o644); err != nil {
			return err
		}
		if s.flavor == "s6" {
			if err := os.WriteFile(filepath.Join(d, "notification-fd"), []byte(s6NotificationFd+"\n"), 0o644); err != nil {
				return err
			}
		}
		s.services = append(s.services, d)
	}
	env := []string{"MARKER_FILE=" + markerFile}
	var argv []string
	if s.flavor == "runit" {
		argv = []string{"runsvdir", s.scandir}
	} else {
		argv = []string{"s6-svscan", "-c", fmt.Sprint(2*n + 16), s.scandir}
		env = append(env, "MARKER_READY_FD="+s6NotificationFd)
	}
	p, err := benchkit.Start(benchkit.Spec{Dir: dir, Log: filepath.Join(dir, s.flavor+".out"), Env: env, KeepManagerEnv: true}, argv...)
	if err != nil {
		return err
	}
	s.p = p
	// Ready when every service's supervisor listens on its control fifo:
	// opening a fifo for writing without blocking fails with ENXIO until
	// a reader has it open.
	pending := append([]string(nil), s.services...)
	if !benchkit.WaitFor(60*time.Second, 10*time.Millisecond, func() bool {
		for len(pending) > 0 {
			fd, err := syscall.Open(filepath.Join(pending[0], "supervise", "control"), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
			if err != nil {
				return !p.Running()
			}
			syscall.Close(fd)
			pending = pending[1:]
		}
		return true
	}) || !p.Running() {
		return fmt.Errorf("%s: %d service supervisors not listening (see %s)", s.flavor, len(pending), dir)
	}
	return nil
}

// writeRun makes the service's run file: by default a symlink to the
// marker, else the usual one-line script that execs it.
func (s *scanner) writeRun(path string) error {
	var script string
	switch s.script {
	case "":
		return os.Symlink(tracked.markerExe, path)
	case "sh":
		script = "#!/bin/sh\nexec " + tracked.markerExe + "\n"
	case "execline":
		script = "#!/usr/bin/execlineb -P\n" + tracked.markerExe + "\n"
	default:
		return fmt.Errorf("RUN_SCRIPT=%q: want sh or execline", s.script)
	}
	return os.WriteFile(path, []byte(script), 0o755)
}

func (s *scanner) root() int { return s.p.Pid() }

// control writes a one-letter command to every service's control fifo.
func (s *scanner) control(letter string) error {
	for _, d := range s.services {
		fd, err := syscall.Open(filepath.Join(d, "supervise", "control"), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: control: %w", d, err)
		}
		_, err = syscall.Write(fd, []byte(letter))
		syscall.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: control: %w", d, err)
		}
	}
	return nil
}

// eachDir runs `tool args DIR` for every service dir from one /bin/sh, the
// way an operator loops over services with a tool that takes one dir.
func (s *scanner) eachDir(tool string, args ...string) (string, error) {
	script := fmt.Sprintf(`for d; do %s %s "$d" || exit 1; done`, tool, strings.Join(args, " "))
	return run(append([]string{"/bin/sh", "-c", script, "sh"}, s.services...))
}

func (s *scanner) startAll(v via) error {
	switch {
	case v == viaAPI:
		return s.control("u")
	case s.flavor == "runit":
		_, err := run(append([]string{"sv", "up"}, s.services...))
		return err
	default:
		_, err := s.eachDir("s6-svc", "-u")
		return err
	}
}

func (s *scanner) downAll(v via) error {
	switch {
	case v == viaAPI:
		return s.control("d")
	case s.flavor == "runit":
		_, err := run(append([]string{"sv", "down"}, s.services...))
		return err
	default:
		_, err := s.eachDir("s6-svc", "-d")
		return err
	}
}

// status through the API reads every supervise/status file and counts the
// services it shows with a pid, which is what sv and s6-svstat do for one
// service (runit: 20 bytes, pid little-endian at offset 12; s6 2.11: 35
// bytes, pid big-endian 64 bits at offset 24).
func (s *scanner) status(v via) (int, error) {
	switch {
	case v == viaCLI && s.flavor == "runit":
		out, err := run(append([]string{"sv", "status"}, s.services...))
		return countLines(out), err
	case v == viaCLI:
		out, err := s.eachDir("s6-svstat")
		return countLines(out), err
	}
	up := 0
	for _, d := range s.services {
		b, err := os.ReadFile(filepath.Join(d, "supervise", "status"))
		if err != nil {
			return up, err
		}
		var pid uint64
		switch {
		case s.flavor == "runit" && len(b) >= 16:
			pid = uint64(binary.LittleEndian.Uint32(b[12:16]))
		case s.flavor == "s6" && len(b) >= 32:
			pid = binary.BigEndian.Uint64(b[24:32])
		default:
			return up, fmt.Errorf("%s: unexpected status file of %d bytes", d, len(b))
		}
		if pid != 0 {
			up++
		}
	}
	return up, nil
}

// stop ends the tree. runsvdir on HUP sends TERM to every runsv, which
// exits once its service is down, and exits itself; s6-svscan on TERM
// stops its s6-supervise children and exits.
func (s *scanner) stop() error {
	if s.p == nil {
		return nil
	}
	sig := syscall.SIGTERM
	if s.flavor == "runit" {
		sig = syscall.SIGHUP
	}
	syscall.Kill(s.p.Pid(), sig)
	if err := s.p.Wait(30 * time.Second); err != nil {
		return err
	}
	// The per-service supervisors may outlive the scanner by a moment;
	// the driver adopts and reaps them.
	if !benchkit.WaitFor(10*time.Second, 20*time.Millisecond, func() bool {
		reapOrphans()
		return syscall.Kill(-s.p.Pid(), 0) != nil
	}) {
		return fmt.Errorf("%s: processes left in group %d", s.flavor, s.p.Pid())
	}
	return nil
}

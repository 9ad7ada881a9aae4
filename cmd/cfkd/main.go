// Command cfkd is the ControlFreak daemon: it supervises services declared
// in its command language, read from a config file (-c) and from its
// management socket (driven by cfkctl).
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/controlfreak-go/cfk/console"
	"github.com/controlfreak-go/cfk/eventlog"
	"github.com/controlfreak-go/cfk/listener"
	"github.com/controlfreak-go/cfk/supervisor"
)

type options struct {
	home    string
	address string
	daemon  bool
	trap    bool
	config  string
	token   string // --token-file
	check   bool   // --upgrade-check: can this binary resume from the document on stdin?

	consoleToken consoleTokenState // the TCP console's token, found by run
}

func main() {
	var o options
	cmd := &cobra.Command{
		Use:           "cfkd",
		Short:         "ControlFreak daemon: supervise services and share their sockets",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       supervisor.Version,
		RunE: func(_ *cobra.Command, _ []string) error {
			if o.check {
				return upgradeCheck()
			}
			return run(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.home, "home", "", "home directory (default $HOME/.controlfreak)")
	f.StringVarP(&o.address, "address", "a", "", "management socket: unix:/path, /path or host:port (default unix:$home/sock)")
	f.BoolVarP(&o.daemon, "daemon", "d", false, "detach and run in the background")
	f.BoolVarP(&o.trap, "trap", "t", false, "with -d, ignore HUP, INT and TERM (stop with `command shutdown`)")
	f.StringVarP(&o.config, "config", "c", "", "config file to load at start, as if sent line by line to the console")
	f.StringVar(&o.token, "token-file", "", "the file holding the token TCP clients must give (default with a TCP management socket: $home/"+console.TokenFileName+", created when missing); given with a unix socket, `auth` lines there are checked against it")
	f.BoolVar(&o.check, "upgrade-check", false, "say whether this binary can take over from the running cfkd (used by upgrade)")
	_ = f.MarkHidden("upgrade-check")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "cfkd: %v\n", err)
		os.Exit(1)
	}
}

// handoverToken names the console token in the upgrade's document.
const handoverToken = "console_token"

// argv is the command line that runs cfkd as o says, every path absolute:
// what the detached daemon (whose directory is /) is started with.
func (o options) argv() []string {
	a := []string{"--home", o.home, "-a", o.address}
	if o.config != "" {
		a = append(a, "-c", o.config)
	}
	if o.token != "" {
		a = append(a, "--token-file", o.token)
	}
	if o.daemon {
		a = append(a, "-d")
	}
	if o.trap {
		a = append(a, "-t")
	}
	return a
}

func run(o options) error {
	// Before anything can fork: nothing cfkd inherited by accident may
	// reach a service.
	if err := supervisor.CloseInheritedOnExec(); err != nil {
		return fmt.Errorf("close-on-exec: %w", err)
	}
	if o.home == "" {
		o.home = os.Getenv("CFKD_HOME")
	}
	if o.home == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no home directory: give --home: %w", err)
		}
		o.home = filepath.Join(home, ".controlfreak")
	}
	home, err := filepath.Abs(o.home)
	if err != nil {
		return err
	}
	o.home = home
	if o.config != "" {
		if o.config, err = filepath.Abs(o.config); err != nil {
			return err
		}
	}
	if o.address == "" {
		o.address = "unix:" + filepath.Join(o.home, "sock")
	}
	if err := os.MkdirAll(o.home, 0o700); err != nil {
		return fmt.Errorf("create home: %w", err)
	}
	if a, err := console.ParseAddress(o.address); err == nil && a.Network == "unix" && !filepath.IsAbs(a.Addr) {
		// Absolute, like every path here: the daemon runs in /.
		if abs, err := filepath.Abs(a.Addr); err == nil {
			o.address = "unix:" + abs
		}
	}

	handover, err := readHandover()
	if err != nil {
		return err
	}
	if handover != nil && handover.Extra[handoverToken] != "" {
		// Resuming: the token the console served with, even if its file
		// changed meanwhile; an upgrade must not fail after the exec.
		o.consoleToken = consoleTokenState{value: handover.Extra[handoverToken]}
	} else if o.consoleToken, err = consoleToken(&o); err != nil {
		return err
	}
	if o.daemon && !isDaemonChild() && handover == nil {
		if o.consoleToken.created {
			// The daemon will find the file made: say it here, where the
			// operator is looking.
			fmt.Fprintf(os.Stderr, "cfkd: created the console token in %s\n", o.token)
		}
		return detach(o.argv())
	}
	ready := readyReporter()
	err = serve(o, ready, handover)
	if err != nil {
		ready.fail(err)
	}
	return err
}

func serve(o options, ready *reporter, handover *supervisor.Handover) error {
	token := o.consoleToken
	var lock *lockFile
	var err error
	if handover != nil {
		lock, err = lockFromFd(handover.Main["lock"])
	} else {
		lock, err = takeLock(filepath.Join(o.home, "lock"))
	}
	if err != nil {
		return err
	}
	defer lock.release()

	logPath := filepath.Join(o.home, "cfkd.log")
	log, err := eventlog.Open(logPath, nil)
	if err != nil {
		return err
	}
	defer log.Close()
	log.Infof("cfkd %s starting, pid %d, home %s", supervisor.Version, os.Getpid(), o.home)

	if err := supervisor.BecomeSubreaper(); err != nil {
		log.Warnf("cannot become a child subreaper: %v", err)
	}
	// Sockets handed over by systemd (or any socket activator) are
	// adopted by name when a `socket NAME` declaration binds.
	inherited, err := listener.Inherited()
	if err != nil {
		return err
	}
	byName := map[string]*os.File{}
	for _, in := range inherited {
		if byName[in.Name] != nil {
			// systemd names every fd of one .socket unit alike; one
			// declaration adopts one fd, and an fd nobody serves would
			// take connections that hang.
			return fmt.Errorf("the service manager passed several sockets named '%s': give each its own FileDescriptorName= (one .socket unit per name) so that each can be declared", in.Name)
		}
		byName[in.Name] = in.File
		log.Infof("inherited socket '%s' (fd %d) from the service manager", in.Name, in.File.Fd())
	}
	notify := newNotifier()
	binary, _ := os.Executable()
	var consoleFd int
	opts := supervisor.Options{
		Home: o.home, Log: log, LogPath: logPath, Inherited: byName,
		NotifyPath: filepath.Join(o.home, "notify.sock"),
		OnShutdown: func() { go notify.stopping() },
		Binary:     binary,
		MainFds: func() map[string]int {
			return map[string]int{"console": consoleFd, "lock": int(lock.f.Fd())}
		},
		MainData: func() map[string]string {
			if token.value == "" {
				return nil
			}
			return map[string]string{handoverToken: token.value}
		},
		Exec: func(binary string, env []string) error {
			log.Infof("re-executing %s in place", binary)
			log.Sync()
			argv := append([]string{binary}, os.Args[1:]...)
			return syscall.Exec(binary, argv, append(os.Environ(), env...))
		},
	}
	var sup *supervisor.Supervisor
	if handover != nil {
		sup, err = supervisor.Resume(opts, handover)
	} else {
		sup, err = supervisor.New(opts)
	}
	if err != nil {
		return err
	}
	go sup.Run()

	// Signals first, so that a TERM during start-up is not lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	// Go hands a process's ignored signals on to its children; trapping is
	// therefore done by catching and dropping, never by SIG_IGN, so that
	// services still die of TERM.
	trap := o.trap && o.daemon

	if o.config != "" && handover == nil {
		if err := loadConfig(o.config, sup); err != nil {
			sup.Shutdown()
			<-sup.Done()
			return err
		}
		log.Infof("loaded %s", o.config)
	}

	var l net.Listener
	if handover != nil {
		l, err = listenerFromFd(handover.Main["console"])
	} else {
		l, err = console.Listen(o.address)
	}
	if err != nil {
		sup.Shutdown()
		<-sup.Done()
		return err
	}
	if consoleFd, err = rawFd(l); err != nil {
		log.Warnf("console socket cannot be handed over: %v", err)
	}
	srv := &console.Server{
		Handler: sup,
		Logf:    func(format string, args ...any) { log.Infof(format, args...) },
		Token:   token.value,
	}
	go func() {
		if err := srv.Serve(l); err != nil {
			log.Errorf("console: %v", err)
		}
	}()
	log.Infof("management socket on %s", o.address)
	if token.value != "" {
		if token.created {
			log.Infof("created the console token in %s", o.token)
		}
		log.Infof("TCP clients must give the token in %s (cfkctl --token-file)", o.token)
	}
	if a, err := console.ParseAddress(o.address); err == nil && a.Network == "tcp" {
		if host, _, _ := net.SplitHostPort(a.Addr); !isLoopback(host) {
			log.Warnf("the management socket %s is reachable from the network: the token and every command travel in clear text; prefer a unix socket, or an SSH tunnel to a loopback address", o.address)
			fmt.Fprintf(os.Stderr, "cfkd: warning: %s is reachable from the network; its traffic is not encrypted\n", o.address)
		}
	}
	ready.ok()
	if out, err := sup.Execute(console.Request{Kind: console.KindCommand, Verb: "list"}); err == nil {
		notify.ready(statusLine(o.address, len(out)), func() bool {
			// A round trip through the supervisor loop.
			_, err := sup.Execute(console.Request{Kind: console.KindCommand, Verb: "version"})
			return err == nil
		})
	}

	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				if err := log.Reopen(); err != nil {
					log.Errorf("reopen log: %v", err)
				} else {
					log.Infof("log file reopened")
				}
				if err := sup.ReopenLogs(); err != nil {
					log.Errorf("reopen the services' log files: %v", err)
				}
			default:
				if trap {
					log.Infof("ignoring %v (-t)", sig)
					continue
				}
				log.Infof("received %v: shutting down", sig)
				sup.Shutdown()
			}
		case <-sup.Done():
			notify.stopping()
			_ = srv.Close()
			if a, err := console.ParseAddress(o.address); err == nil && a.Network == "unix" {
				_ = os.Remove(a.Addr)
			}
			log.Infof("cfkd exiting")
			return nil
		}
	}
}

func loadConfig(path string, h console.Handler) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	_, err = console.Load(f, path, h)
	return err
}

// isLoopback reports whether a console host is only reachable locally.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

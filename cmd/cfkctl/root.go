package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/controlfreak-go/cfk/console"
)

// app is one cfkctl invocation: its global options, its streams and its
// connection to cfkd, opened on first use.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	address   string // --address; empty means "work out the default"
	tokenFile string // --token-file; empty means "work out the default"
	home      string // --home
	basedir   string // --basedir, for load
	yes       bool   // --yes, accepted for compatibility, unused

	client *console.Client
	addr   string // the address client was dialled at
}

// Help groups, as in the original's synopsis.
const (
	groupService = "service"
	groupProxy   = "proxy"
	groupOther   = "other"
)

// commands lists the subcommands. A new subcommand is one constructor here.
func (a *app) commands() []*cobra.Command {
	var cmds []*cobra.Command
	for _, v := range serviceVerbs {
		cmds = append(cmds, a.serviceVerbCommand(v))
	}
	return append(cmds,
		a.statusCommand(),
		a.logsCommand(),
		a.pidsCommand(),
		a.descCommand(),
		a.pidCommand(),
		a.listCommand(),
		a.versionCommand(),
		a.shutdownCommand(),
		a.loadCommand(),
		a.proxyStatusCommand(),
		a.proxyVerbCommand("up", "Start a proxy"),
		a.proxyVerbCommand("down", "Stop a proxy, and bring down its services"),
		a.socketsCommand(),
		a.memCommand(),
		a.dumpCommand(),
		a.scaleCommand(),
		a.upgradeCommand(),
		a.socketVerbCommand("bind", "Bind a declared socket and listen on it"),
		a.socketVerbCommand("unbind", "Close a socket no running service uses"),
	)
}

// rootCommand builds the whole command tree.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "cfkctl",
		Short: "Control a cfkd process supervisor",
		Long: `cfkctl talks to cfkd over its management socket.

Service references (svcref):
  all      all known services (the default when none is given)
  NAME     the service called NAME
  @TAG     every service tagged TAG

States: running, starting, stopping, stopped (never started, downed or
completed), fail (terminated abnormally), backoff (could not start, will try
again), fatal (gave up starting).`,
		Example: `  cfkctl status
  cfkctl up @webs
  cfkctl restart worker1 worker2
  cfkctl pid s1
  cfkctl --basedir /srv/app load /srv/app/cfk.conf`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Without a subcommand there is nothing to do: a usage error, as
		// in the original.
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("no command given")
		},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&a.address, "address", "a", "",
		"cfkd's management socket: unix:/path, /path or host:port\n"+
			"(default $CFKD_ADDRESS, else unix:HOME/sock with HOME from --home,\n"+
			"$CFKD_HOME or $HOME/.controlfreak)")
	pf.StringVar(&a.home, "home", "", "cfkd's home directory, to find its socket (default $CFKD_HOME or $HOME/.controlfreak)")
	pf.StringVar(&a.tokenFile, "token-file", "",
		"for a TCP management socket: the file with cfkd's console token\n"+
			"(default $CFKD_TOKEN_FILE, else HOME/"+console.TokenFileName+" when it exists;\n"+
			"the default home's token only for a loopback address)")
	pf.StringVar(&a.basedir, "basedir", "", "value of ${BASE} for load (default the current directory)")
	pf.BoolVarP(&a.yes, "yes", "y", false, "do not ask for confirmations (accepted for compatibility; cfkctl never asks)")

	root.AddGroup(
		&cobra.Group{ID: groupService, Title: "Service commands (take svcrefs, default all):"},
		&cobra.Group{ID: groupProxy, Title: "Proxy commands:"},
		&cobra.Group{ID: groupOther, Title: "Other commands:"},
	)
	root.SetHelpCommandGroupID(groupOther)
	root.SetCompletionCommandGroupID(groupOther)
	root.AddCommand(a.commands()...)
	return root
}

// defaultHome is where cfkd keeps its socket unless told otherwise.
const defaultHomeDir = ".controlfreak"

// resolveAddress gives the management address to dial. An explicit flag
// wins over the environment, and an address over a home directory:
// --address, --home, $CFKD_ADDRESS, $CFKD_HOME, $HOME/.controlfreak.
func (a *app) resolveAddress() (string, error) {
	if a.address != "" {
		return a.address, nil
	}
	if a.home != "" {
		return "unix:" + filepath.Join(a.home, "sock"), nil
	}
	if env := os.Getenv("CFKD_ADDRESS"); env != "" {
		return env, nil
	}
	if env := os.Getenv("CFKD_HOME"); env != "" {
		return "unix:" + filepath.Join(env, "sock"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find cfkd's socket (%v); use --address", err)
	}
	return "unix:" + filepath.Join(home, defaultHomeDir, "sock"), nil
}

// resolveToken gives the token to send to the TCP console at addr, or ""
// to send none: --token-file, $CFKD_TOKEN_FILE, or the token file in
// cfkd's home (--home, $CFKD_HOME) when there is one. The default home's
// token (~/.controlfreak) goes only to a loopback address: a token is
// not sent in clear text to a host nobody named it for. A file named
// explicitly must be readable.
func (a *app) resolveToken(addr string) (string, error) {
	path := a.tokenFile
	if path == "" {
		path = os.Getenv("CFKD_TOKEN_FILE")
	}
	if path != "" {
		return console.ReadToken(path)
	}
	home := a.home
	if home == "" {
		home = os.Getenv("CFKD_HOME")
	}
	if home == "" {
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", nil
		}
		h, err := os.UserHomeDir()
		if err != nil {
			return "", nil
		}
		home = filepath.Join(h, defaultHomeDir)
	}
	token, err := console.ReadToken(filepath.Join(home, console.TokenFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return token, err
}

// Command worker is the tiny HTTP worker of the demo and the tests. It
// serves on a listening socket it inherits from cfkd — as fd 3 with
// LISTEN_FDS (systemd style, `sockets=` in cfkd) or as its stdin (FastCGI
// style, `tie_stdin_to=`) — or on -listen ADDR when run by hand.
//
// It answers every request with its service name and pid, so that a few
// requests show the kernel spreading connections across the pool, and it
// stops gracefully on TERM: no new accepts, in-flight requests finish.
//
// Under a supervisor that gives it NOTIFY_SOCKET (cfkd does), it says
// READY=1 once it serves, so a service with `ready=notify` is running as
// soon as it can answer, and a rolling restart moves on without waiting
// out startwait_secs.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/controlfreak-go/cfk/examples/internal/drain"
)

func main() {
	addr := flag.String("listen", "", "listen on this address instead of an inherited socket")
	flag.Parse()

	l, how, err := listener(*addr)
	if err != nil {
		log.Fatalf("worker: %v", err)
	}
	name := os.Getenv("CONTROL_FREAK_SERVICE")
	if name == "" {
		name = "worker"
	}
	pid := os.Getpid()
	log.Printf("%s (pid %d) serving on %s (%s)", name, pid, l.Addr(), how)

	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s pid %d\n", name, pid)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// On TERM: no new accepts, and every connection already accepted is
	// answered (see package drain for why Shutdown alone is not enough).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	// Ready now, a moment before the accept loop runs: the socket has been
	// listening since cfkd bound it, so a connection arriving in between
	// waits in the kernel's accept queue for us. Without NOTIFY_SOCKET
	// (run by hand) this does nothing.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Printf("worker: sd_notify: %v", err)
	}
	if err := drain.Serve(srv, []net.Listener{l}, sig, 5*time.Second); err != nil {
		log.Fatalf("worker: %v", err)
	}
}

// listener finds the socket to serve on.
func listener(addr string) (net.Listener, string, error) {
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		return l, "-listen", err
	}
	// systemd's protocol: LISTEN_PID must be ours, the sockets start at fd 3.
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		if n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); n >= 1 {
			l, err := net.FileListener(os.NewFile(3, "listen-fd-3"))
			return l, "LISTEN_FDS", err
		}
	}
	// FastCGI style: the listening socket is stdin.
	l, err := net.FileListener(os.Stdin)
	if err != nil {
		return nil, "", fmt.Errorf("no socket: give -listen, or run under cfkd with sockets= or tie_stdin_to=")
	}
	return l, "stdin", nil
}

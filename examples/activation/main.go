// Command activation is an HTTP worker that knows nothing of cfkd: it takes
// its listening socket the way any systemd socket-activated Go program does,
// with go-systemd's activation.Listeners(). That function returns nothing
// unless LISTEN_PID is this process's own pid, so a worker that serves
// under cfkd's `sockets=` proves cfkd sets LISTEN_PID to the child's pid,
// LISTEN_FDS to the count, and places the sockets from fd 3 on.
//
// It answers every request with its service name, its pid and the number
// of sockets it was handed, and stops gracefully on TERM.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/controlfreak-go/cfk/examples/internal/drain"
)

// shutdownWait bounds how long in-flight requests may take after TERM.
const shutdownWait = 5 * time.Second

func main() {
	// Listeners also unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, so
	// they do not leak to anything this worker might start.
	ls, err := activation.Listeners()
	if err != nil {
		log.Fatalf("activation: %v", err)
	}
	var listeners []net.Listener
	for _, l := range ls {
		if l != nil { // nil: a passed fd that is not a stream listener
			listeners = append(listeners, l)
		}
	}
	if len(listeners) == 0 {
		log.Fatalf("activation: no listening socket passed (LISTEN_PID=%q, LISTEN_FDS=%q, my pid %d)",
			os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getpid())
	}

	name := os.Getenv("CONTROL_FREAK_SERVICE")
	if name == "" {
		name = "activation"
	}
	pid := os.Getpid()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s pid %d via go-systemd activation, %d sockets\n", name, pid, len(listeners))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	for _, l := range listeners {
		log.Printf("%s (pid %d) serving on %s", name, pid, l.Addr())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if err := drain.Serve(srv, listeners, sig, shutdownWait); err != nil {
		log.Fatalf("activation: %v", err)
	}
}

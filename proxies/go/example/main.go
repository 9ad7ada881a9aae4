// Command example is a ControlFreak proxy that loads a large read-only
// table once and serves lookups into it from a pool of workers that all
// read the same physical memory.
//
// Under cfkd:
//
//	socket web host=127.0.0.1
//	socket web service=8080
//	socket web nonblocking=1
//	command bind web
//	proxy tables cmd=/path/to/example -records 6553600
//	proxy tables service lookup001 cmd=lookup
//	proxy tables service lookup001 sockets=web
//	proxy tables service lookup002 cmd=lookup
//	proxy tables service lookup002 sockets=web
//	command start service lookup001
//	command start service lookup002
//
// (`proxy tables service lookup003 tie_stdin_to=web` serves the socket
// as stdin instead). The proxy generates 6553600 records of 32 bytes (200 MiB)
// into a sealed memfd, or copies -table FILE there, once; each worker
// maps it and answers on its sockets (LISTEN_FDS, or stdin with
// tie_stdin_to):
//
//	GET /lookup?key=K   the value of key K (binary search), 404 if absent
//	GET /info           pid, service and table size, as JSON
//	GET /sum            reads the whole table and returns its checksum
//
// A worker says "serving N records ..." on stdout (an `out:NAME:` log
// line) once it serves. Then SIGUSR1 makes it run the GC and return freed
// memory to the kernel, and SIGUSR2 makes it read the whole table; each
// says so on stdout when done.
//
// With -standalone the program is not a proxy: it builds the table in its
// own heap and serves it on -listen, or on an inherited listening fd 3;
// that is the baseline the memory benchmark compares the proxy against.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	cfkproxy "github.com/controlfreak-go/cfk/proxies/go"
	"github.com/controlfreak-go/cfk/proxies/go/example/table"
)

// defaultRecords makes a 200 MiB table.
const defaultRecords = 200 << 20 / table.RecordBytes

// shutdownWait bounds how long a stopping worker lets requests finish.
const shutdownWait = 2 * time.Second

func main() {
	records := flag.Uint64("records", defaultRecords, "number of records to generate (32 bytes each)")
	tableFile := flag.String("table", "", "load this file of sorted 32-byte records instead of generating them")
	standalone := flag.Bool("standalone", false, "not a proxy: load the table into this process's heap and serve it")
	listen := flag.String("listen", "", "with -standalone: address to serve on (default: the listening socket at fd 3)")
	flag.Parse()

	if *standalone {
		if err := runStandalone(*records, *tableFile, *listen); err != nil {
			fmt.Fprintln(os.Stderr, "example:", err)
			os.Exit(1)
		}
		return
	}
	cfkproxy.Main(cfkproxy.App{
		Preload: func(w io.Writer) error { return preload(w, *records, *tableFile) },
		Serve:   serveWorker,
	})
}

// preload writes the table into the shared memory.
func preload(w io.Writer, records uint64, file string) error {
	if file == "" {
		return table.Generate(w, records)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size()%table.RecordBytes != 0 {
		return fmt.Errorf("%s: %d bytes is not a whole number of %d-byte records", file, st.Size(), table.RecordBytes)
	}
	_, err = io.Copy(w, f)
	return err
}

func serveWorker(ctx context.Context, w *cfkproxy.Worker) error {
	if len(w.Cmd) > 0 && w.Cmd[0] != "lookup" {
		return fmt.Errorf("unknown cmd %q: this proxy runs `lookup`", w.Cmd[0])
	}
	if err := table.Check(w.Shared); err != nil {
		return err
	}
	ls := w.AllListeners()
	if len(ls) == 0 {
		return errors.New("no socket to serve: give the service sockets= or tie_stdin_to=")
	}
	return serve(ctx, w.Name, w.Shared, ls)
}

func runStandalone(records uint64, file, addr string) error {
	var t []byte
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		t = b
	} else {
		t = make([]byte, records*table.RecordBytes)
		table.Fill(t)
	}
	if err := table.Check(t); err != nil {
		return err
	}
	var l net.Listener
	var err error
	if addr != "" {
		l, err = net.Listen("tcp", addr)
	} else {
		l, err = net.FileListener(os.NewFile(3, "listener"))
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	name := "standalone-" + strconv.Itoa(os.Getpid())
	if err := serve(ctx, name, t, []net.Listener{l}); err != nil {
		return err
	}
	runtime.KeepAlive(t)
	return nil
}

// serve answers HTTP on every listener until ctx is done.
func serve(ctx context.Context, name string, t []byte, ls []net.Listener) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	go handleSignals(ctx, sigs, t)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /lookup", func(rw http.ResponseWriter, r *http.Request) {
		key, err := strconv.ParseUint(r.URL.Query().Get("key"), 10, 64)
		if err != nil {
			http.Error(rw, "key must be an unsigned integer", http.StatusBadRequest)
			return
		}
		v, ok := table.Lookup(t, key)
		if !ok {
			http.Error(rw, "no such key", http.StatusNotFound)
			return
		}
		fmt.Fprintf(rw, "%d %s\n", key, hex.EncodeToString(v))
	})
	mux.HandleFunc("GET /info", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(map[string]any{
			"pid":     os.Getpid(),
			"service": name,
			"records": table.Len(t),
			"bytes":   len(t),
		})
	})
	mux.HandleFunc("GET /sum", func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "%d bytes sum %d\n", len(t), table.Sum(t))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errs <- srv.Serve(l) }()
	}
	fmt.Printf("serving %d records (%d bytes) on %d sockets\n", table.Len(t), len(t), len(ls))
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		return nil
	case err := <-errs:
		srv.Close()
		return err
	}
}

// handleSignals serves the two signals the memory benchmark sends.
func handleSignals(ctx context.Context, sigs <-chan os.Signal, t []byte) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				runtime.GC()
				debug.FreeOSMemory()
				fmt.Println("freed memory")
			case syscall.SIGUSR2:
				fmt.Printf("read %d bytes sum %d\n", len(t), table.Sum(t))
			}
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The balanced load client (-load), for the paired throughput phase.
//
// wrk cannot be told where its keep-alive connections land: the kernel
// hands each to whichever worker accepts first, and on two cores that
// draw alone moves a run by a third. This client draws until it holds
// exactly conns/workers connections on every worker (the worker's pid is
// in each answer), so both pools serve the same layout: every worker
// busy, none crowded. With -close it opens a new connection per request
// instead, which needs no balancing.
//
// It is started once per pool, pinned to the load CPU; once connected it
// prints "ready" and waits for a line on stdin, so that the two clients
// of a paired run measure the same window of time; then it runs for the
// given time and prints a loadResult as JSON.

// loadResult is what one -load run did.
type loadResult struct {
	Requests  int64            // answered with 2xx within the window
	Non2xx    int64            // answered with another status
	Errors    int64            // connect, write or read errors
	Seconds   float64          // the window's length as measured
	PerWorker map[string]int64 // 2xx answers per worker pid
	Drawn     int              // connections opened to reach the layout
}

func (r loadResult) rps() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Seconds
}

var (
	keepAliveRequest = []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	closeRequest     = []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
)

// httpConn is one client connection and its read buffer.
type httpConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialHTTP(addr string) (*httpConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &httpConn{c: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

// requestTimeout bounds one request: a pool that stops answering ends
// the run with errors instead of hanging it.
var requestTimeout = 5 * time.Second

// get sends req and reads one answer: its status and the pid its body
// names ("hello from NAME pid N").
func (h *httpConn) get(req []byte) (status int, pid string, err error) {
	_ = h.c.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := h.c.Write(req); err != nil {
		return 0, "", err
	}
	line, err := h.r.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	if f := bytes.Fields(line); len(f) >= 2 {
		status, _ = strconv.Atoi(string(f[1]))
	}
	length := -1
	for {
		line, err := h.r.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	var body []byte
	if length >= 0 {
		body = make([]byte, length)
		_, err = io.ReadFull(h.r, body)
	} else {
		body, err = io.ReadAll(h.r) // Connection: close without a length
	}
	if err != nil {
		return 0, "", err
	}
	if f := bytes.Fields(body); len(f) >= 2 && string(f[len(f)-2]) == "pid" {
		pid = string(f[len(f)-1])
	}
	return status, pid, nil
}

// balance opens connections until every one of workers pids holds per of
// them, closing the ones that land on a worker that has enough.
func balance(addr string, workers, per int, deadline time.Time) ([]*httpConn, int, error) {
	held := map[string][]*httpConn{}
	full, drawn := 0, 0
	var all []*httpConn
	for full < workers {
		if time.Now().After(deadline) {
			for _, h := range all {
				h.c.Close()
			}
			return nil, drawn, fmt.Errorf("could not place %d connections on each of %d workers in %d tries (got %d workers)",
				per, workers, drawn, len(held))
		}
		h, err := dialHTTP(addr)
		if err != nil {
			return nil, drawn, err
		}
		drawn++
		status, pid, err := h.get(keepAliveRequest)
		if err != nil || status != 200 || pid == "" {
			h.c.Close()
			return nil, drawn, fmt.Errorf("first answer on a new connection: status %d, pid %q, %v", status, pid, err)
		}
		if len(held[pid]) >= per {
			h.c.Close()
			continue
		}
		held[pid] = append(held[pid], h)
		all = append(all, h)
		if len(held[pid]) == per {
			full++
		}
	}
	return all, drawn, nil
}

// runLoad is the -load mode: connect, say ready, wait for the go line on
// stdin, load addr for dur, print the result.
func runLoad(addr string, workers, conns int, dur time.Duration, closeConns bool) error {
	var held []*httpConn
	res := loadResult{PerWorker: map[string]int64{}}
	if !closeConns {
		if conns%workers != 0 {
			return fmt.Errorf("%d connections do not spread evenly over %d workers", conns, workers)
		}
		var err error
		held, res.Drawn, err = balance(addr, workers, conns/workers, time.Now().Add(20*time.Second))
		if err != nil {
			return err
		}
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for go: %w", err)
	}

	loadFor(addr, held, conns, dur, closeConns, &res)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// loadFor runs the load window: conns loops, on the held connections
// (keep-alive) or on a new connection per request, for dur; it adds what
// they did to res.
func loadFor(addr string, held []*httpConn, conns int, dur time.Duration, closeConns bool, res *loadResult) {
	var stop atomic.Bool
	var mu sync.Mutex
	var wg sync.WaitGroup
	// One goroutine per connection; each keeps its own counts and adds
	// them up at the end, so that the loop shares nothing.
	loop := func(h *httpConn) {
		defer wg.Done()
		var ok, non2xx, errs int64
		per := map[string]int64{}
		for !stop.Load() {
			if closeConns {
				var err error
				if h, err = dialHTTP(addr); err != nil {
					if !stop.Load() {
						errs++
					}
					time.Sleep(10 * time.Millisecond) // a refused connect returns at once
					continue
				}
			}
			req := keepAliveRequest
			if closeConns {
				req = closeRequest
			}
			status, pid, err := h.get(req)
			switch {
			case err != nil:
				if !stop.Load() {
					errs++
				}
				h.c.Close()
				time.Sleep(10 * time.Millisecond)
				if !closeConns {
					// A new connection, wherever the kernel puts it: the
					// errors column says the layout may have changed.
					if h, err = dialHTTP(addr); err != nil {
						h = &httpConn{c: deadConn{}, r: bufio.NewReader(deadConn{})}
					}
				}
				continue
			case stop.Load():
				// answered after the window: not counted
			case status/100 == 2:
				ok++
				per[pid]++
			default:
				non2xx++
			}
			if closeConns {
				h.c.Close()
			}
		}
		if !closeConns {
			h.c.Close()
		}
		mu.Lock()
		res.Requests += ok
		res.Non2xx += non2xx
		res.Errors += errs
		for p, n := range per {
			res.PerWorker[p] += n
		}
		mu.Unlock()
	}
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		if closeConns {
			go loop(nil)
		} else {
			go loop(held[i])
		}
	}
	time.Sleep(dur)
	stop.Store(true)
	res.Seconds = time.Since(start).Seconds()
	wg.Wait()
}

// deadConn stands for a connection that could not be reopened: every use
// fails, so the loop counts an error and tries to reconnect again.
type deadConn struct{ net.Conn }

var errDead = errors.New("no connection")

func (deadConn) Read([]byte) (int, error)  { return 0, errDead }
func (deadConn) Write([]byte) (int, error) { return 0, errDead }
func (deadConn) Close() error              { return nil }

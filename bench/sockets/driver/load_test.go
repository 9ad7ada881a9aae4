package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

type pidKey struct{}

// fakePool serves "hello from wN pid N" where the pid depends on the
// connection: connection k is answered by "worker" k mod workers, as if
// the kernel had handed it to that process. Path /teapot answers 418.
func fakePool(t *testing.T, workers int) string {
	t.Helper()
	return fakePoolWith(t, workers, nil)
}

// fakePoolWith is fakePool calling before, when set, ahead of each answer.
func fakePoolWith(t *testing.T, workers int, before func()) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, pidKey{}, 1000+int(conns.Add(1))%workers)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if before != nil {
				before()
			}
			pid := r.Context().Value(pidKey{}).(int)
			if r.URL.Path == "/teapot" {
				w.WriteHeader(http.StatusTeapot)
			}
			fmt.Fprintf(w, "hello from w pid %d\n", pid)
		}),
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestBalancePlacesTheSameNumberOnEveryWorker(t *testing.T) {
	addr := fakePool(t, 3)
	conns, drawn, err := balance(addr, 3, 4, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 12 || drawn < 12 {
		t.Fatalf("got %d connections after %d drawn, want 12", len(conns), drawn)
	}
	per := map[string]int{}
	for _, h := range conns {
		status, pid, err := h.get(keepAliveRequest) // the same worker again: keep-alive
		if err != nil || status != 200 {
			t.Fatalf("status %d, %v", status, err)
		}
		per[pid]++
		h.c.Close()
	}
	if len(per) != 3 {
		t.Fatalf("connections on %d workers, want 3: %v", len(per), per)
	}
	for pid, n := range per {
		if n != 4 {
			t.Errorf("worker %s holds %d connections, want 4 (%v)", pid, n, per)
		}
	}
}

func TestBalanceGivesUpWhenAWorkerIsMissing(t *testing.T) {
	addr := fakePool(t, 2)
	_, _, err := balance(addr, 3, 1, time.Now().Add(300*time.Millisecond))
	if err == nil {
		t.Fatal("balanced 3 workers on a pool of 2")
	}
}

func TestGetReadsStatusAndPid(t *testing.T) {
	addr := fakePool(t, 1)
	h, err := dialHTTP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer h.c.Close()
	status, pid, err := h.get([]byte("GET /teapot HTTP/1.1\r\nHost: x\r\n\r\n"))
	if err != nil || status != 418 || pid != "1000" {
		t.Fatalf("got %d %q %v, want 418 1000", status, pid, err)
	}
	// The connection is still usable: the body was read to its end.
	status, pid, err = h.get(keepAliveRequest)
	if err != nil || status != 200 || pid != "1000" {
		t.Fatalf("second request: %d %q %v", status, pid, err)
	}
	c, err := dialHTTP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	if status, _, err := c.get(closeRequest); err != nil || status != 200 {
		t.Fatalf("Connection: close: %d %v", status, err)
	}
}

func TestRatioAndRate(t *testing.T) {
	s := pairedSample{res: [2]loadResult{{Requests: 300, Seconds: 3}, {Requests: 400, Seconds: 4}}}
	if s.res[0].rps() != 100 || s.ratio() != 1 {
		t.Fatalf("rps %v ratio %v", s.res[0].rps(), s.ratio())
	}
	if (loadResult{}).rps() != 0 {
		t.Fatal("no window: rate must be 0")
	}
}

// TestLoadEndsWhenThePoolStopsAnswering: a pool that answers the
// placing requests and then goes silent must give a result with errors,
// not hang the benchmark.
func TestLoadEndsWhenThePoolStopsAnswering(t *testing.T) {
	old := requestTimeout
	requestTimeout = 300 * time.Millisecond
	t.Cleanup(func() { requestTimeout = old })
	var answered atomic.Int64
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	addr := fakePoolWith(t, 2, func() {
		if answered.Add(1) > 4 { // the placing requests only
			<-block
		}
	})
	held, _, err := balance(addr, 2, 2, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	res := loadResult{PerWorker: map[string]int64{}}
	done := make(chan struct{})
	go func() {
		loadFor(addr, held, 4, time.Second, false, &res)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the load window did not end while the pool was silent")
	}
	if res.Requests != 0 || res.Errors == 0 {
		t.Fatalf("silent pool: %+v", res)
	}
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// probeClient opens a new connection for every request, so each probe
// goes through the accept queue and may reach any worker.
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   3 * time.Second,
}

// probeOnce asks the pool once and returns the pid that answered
// ("... pid N" is the last two words of every worker's answer).
func probeOnce(url string) (int, error) {
	resp, err := probeClient.Get(url)
	if err != nil {
		return 0, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 || f[len(f)-2] != "pid" {
		return 0, fmt.Errorf("answer without a pid: %q", b)
	}
	return strconv.Atoi(f[len(f)-1])
}

// prober sends requests on fresh connections from a few goroutines while
// a restart runs, and notes when each pid answered first. That is how the
// driver knows a new worker serves: not that it exists, but that it has
// answered.
type prober struct {
	mu    sync.Mutex
	first map[int]time.Time
	reqs  int
	errs  int
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startProber(url string, goroutines int) *prober {
	p := &prober{first: map[int]time.Time{}, stop: make(chan struct{})}
	for i := 0; i < goroutines; i++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case <-p.stop:
					return
				default:
				}
				pid, err := probeOnce(url)
				now := time.Now()
				p.mu.Lock()
				p.reqs++
				if err != nil {
					p.errs++
				} else if _, ok := p.first[pid]; !ok {
					p.first[pid] = now
				}
				p.mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond) // a refused connect returns at once
				}
			}
		}()
	}
	return p
}

// seen returns the pids that have answered and when they first did.
func (p *prober) seen() map[int]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]time.Time, len(p.first))
	for k, v := range p.first {
		out[k] = v
	}
	return out
}

func (p *prober) end() (reqs, errs int) {
	close(p.stop)
	p.wg.Wait()
	return p.reqs, p.errs
}

package cfkproxy

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/fakecfkd"
	"github.com/controlfreak-go/cfk/proxies/go/example/table"
)

// startExample runs the example proxy (built without -race) under a fake
// cfkd with one socket, "web".
func startExample(t *testing.T, records int) *fakecfkd.Proxy {
	t.Helper()
	p, err := fakecfkd.Start(fakecfkd.Options{
		Path:    example.Path(t),
		Args:    []string{"-records", strconv.Itoa(records)},
		Sockets: []string{"web"},
		Home:    t.TempDir(),
		Stdout:  os.Stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// startLookup starts one example worker on "web" and waits until it serves.
func startLookup(t *testing.T, p *fakecfkd.Proxy, name string) int {
	t.Helper()
	st, err := p.StartService(statusWait, map[string]any{"name": name, "cmd": "lookup", "sockets": []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitLogPrefix(statusWait, "out:"+name+":serving "); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

func TestExampleLookups(t *testing.T) {
	const records = 100_000
	p := startExample(t, records)
	startLookup(t, p, "lookup1")
	addr := p.Sockets["web"].Addr
	for _, i := range []uint64{0, 1, 4242, records - 1} {
		k := table.Key(i)
		v := table.Value(k)
		want := fmt.Sprintf("%d %s\n", k, hex.EncodeToString(v[:]))
		if got := httpGet(t, fmt.Sprintf("http://%s/lookup?key=%d", addr, k)); got != want {
			t.Errorf("lookup of record %d: %q, want %q", i, got, want)
		}
	}
	// Keys between records, and past the last one, are absent.
	for _, k := range []uint64{table.Key(records-1) + 1, 1 << 62} {
		resp, err := httpClient.Get(fmt.Sprintf("http://%s/lookup?key=%d", addr, k))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("lookup of absent key %d: %s, want 404", k, resp.Status)
		}
	}
	if got, want := httpGet(t, "http://"+addr+"/info"), fmt.Sprintf(`"records":%d`, records); !strings.Contains(got, want) {
		t.Errorf("/info %q, want %s", got, want)
	}
}

// The example shares a table read from a file (-table) as well; a file
// that is not whole records stops the proxy before any worker runs.
func TestExampleTableFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tbl")
	f, err := os.Create(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := table.Generate(f, 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p, err := fakecfkd.Start(fakecfkd.Options{Path: example.Path(t), Args: []string{"-table", good}, Sockets: []string{"web"}, Home: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.WaitLogPrefix(statusWait, "out:-:preloaded 32000 bytes"); err != nil {
		t.Fatal(err)
	}
	startLookup(t, p, "fromfile")
	k := table.Key(999)
	v := table.Value(k)
	if got, want := httpGet(t, fmt.Sprintf("http://%s/lookup?key=%d", p.Sockets["web"].Addr, k)), fmt.Sprintf("%d %x\n", k, v); got != want {
		t.Errorf("lookup: %q, want %q", got, want)
	}

	bad := filepath.Join(dir, "bad.tbl")
	os.WriteFile(bad, make([]byte, 33), 0o644)
	p2, err := fakecfkd.Start(fakecfkd.Options{Path: example.Path(t), Args: []string{"-table", bad}, Home: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if exited, err := p2.Wait(exitWait); !exited || err == nil {
		t.Errorf("proxy with a bad table: exited %v, %v; want exit status 1", exited, err)
	}
	if _, err := p2.WaitLogPrefix(time.Second, "err:-:preload: "+bad+": 33 bytes is not a whole number of 32-byte records"); err != nil {
		t.Error(err)
	}
}

// TestSharedMemoryFootprint checks the point of the whole design: four
// workers that have each read every byte of a 64 MiB table cost, all
// together and with the proxy, less than 1.2 times what one worker costs
// alone (the table plus one worker's own memory), because they all map
// the same pages. It is a property of the kernel's accounting, not a
// timing, so it is stable on a loaded machine.
func TestSharedMemoryFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example and maps 64 MiB")
	}
	const records = 64 << 20 / table.RecordBytes
	p := startExample(t, records)
	// Every worker must read all 64 MiB and find the same checksum (that
	// the bytes are Preload's is TestStartServeStop's business).
	readPrefix := fmt.Sprintf("read %d bytes sum ", records*table.RecordBytes)
	var sum string
	readAll := func(name string, pid int) {
		t.Helper()
		syscall.Kill(pid, syscall.SIGUSR2)
		l, err := p.WaitLogPrefix(30*time.Second, "out:"+name+":"+readPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if _, s, _ := strings.Cut(l, " sum "); sum == "" {
			sum = s
		} else if s != sum {
			t.Fatalf("%s read a table with checksum %s, w0 one with %s", name, s, sum)
		}
		// Whatever the reading allocated is not the table's cost.
		syscall.Kill(pid, syscall.SIGUSR1)
		if _, err := p.WaitLog(statusWait, func(l string) bool { return l == "out:"+name+":freed memory" }); err != nil {
			t.Fatal(err)
		}
	}
	pssOf := func(pid int) int {
		t.Helper()
		kb, err := pss(pid)
		if err != nil {
			t.Fatal(err)
		}
		return kb
	}

	pid0 := startLookup(t, p, "w0")
	readAll("w0", pid0)
	one := pssOf(pid0)
	if one < 64<<10 {
		t.Fatalf("one worker's PSS is %d kB after reading 64 MiB: the table is not mapped", one)
	}

	pids := []int{pid0}
	for i := 1; i < 4; i++ {
		name := "w" + strconv.Itoa(i)
		pid := startLookup(t, p, name)
		readAll(name, pid)
		pids = append(pids, pid)
	}
	total := pssOf(p.Cmd.Process.Pid)
	report := fmt.Sprintf("proxy %d kB", total)
	for _, pid := range pids {
		kb := pssOf(pid)
		total += kb
		report += fmt.Sprintf(", worker %d kB", kb)
	}
	limit := one * 12 / 10
	t.Logf("one worker alone: %d kB; proxy and 4 workers: %d kB (%s); limit %d kB (ratio %.3f)",
		one, total, report, limit, float64(total)/float64(one))
	if total >= limit {
		t.Errorf("proxy and 4 workers use %d kB PSS, not under 1.2 x one worker (%d kB): %s", total, one, report)
	}
}

package supervisor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// testProxy is a small proxy program for the tests (helper mode "proxy"):
// it speaks the protocol of proxies/PROTOCOL.md and execs each service's
// cmd (a JSON array) instead of running preloaded code. Mode "badproxy"
// writes garbage and never starts anything.
func testProxy(bad bool, preload time.Duration, dieOnStart ...string) {
	fd := func(env string) *os.File {
		n, err := strconv.Atoi(os.Getenv(env))
		if err != nil {
			fmt.Fprintln(os.Stderr, "no", env)
			os.Exit(5)
		}
		return os.NewFile(uintptr(n), env)
	}
	cmds, status, logs := fd("_CFK_COMMAND_FD"), fd("_CFK_STATUS_FD"), fd("_CFK_LOG_FD")
	var mu sync.Mutex
	write := func(f *os.File, s string) {
		mu.Lock()
		f.WriteString(s + "\n")
		mu.Unlock()
	}
	time.Sleep(preload)          // a slow preload
	fmt.Println("test proxy up") // stdout: logged as proxy.NAME.out
	write(logs, "out:-:proxy ready")
	if bad {
		for i := 0; i < 5000; i++ {
			write(status, "{not json "+strconv.Itoa(i))
			write(logs, "garbage without colons")
		}
		select {}
	}
	pids := map[string]int{}
	names := map[int]string{}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(cmds)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	stopAll := func() {
		mu.Lock()
		for _, pid := range pids {
			syscall.Kill(-pid, syscall.SIGTERM)
		}
		mu.Unlock()
	}
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGTERM {
				stopAll()
				os.Exit(0)
			}
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if err != nil || pid <= 0 {
					break
				}
				if n, ok := names[pid]; ok {
					write(status, fmt.Sprintf(`{"status":"stopped","name":%q,"pid":%d,"exit_status":%d}`, n, pid, int(ws)))
					delete(names, pid)
					delete(pids, n)
				}
			}
		case line, ok := <-lines:
			if !ok {
				stopAll()
				os.Exit(0)
			}
			var c struct {
				Command string            `json:"command"`
				Name    string            `json:"name"`
				Cmd     []string          `json:"cmd"`
				Env     map[string]string `json:"env"`
			}
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				write(logs, "err:-:bad command")
				continue
			}
			switch c.Command {
			case "start":
				env := os.Environ()
				for k, v := range c.Env {
					env = append(env, k+"="+v)
				}
				env = append(env, "CONTROL_FREAK_SERVICE="+c.Name)
				var p [2]int
				syscall.Pipe2(p[:], syscall.O_CLOEXEC)
				pid, err := syscall.ForkExec(c.Cmd[0], c.Cmd, &syscall.ProcAttr{
					Env: env, Files: []uintptr{0, uintptr(p[1]), uintptr(p[1])}, Sys: &syscall.SysProcAttr{Setsid: true},
				})
				syscall.Close(p[1])
				if err != nil {
					syscall.Close(p[0])
					write(logs, "err:-:cannot start "+c.Name)
					continue
				}
				go func(name string, r *os.File) {
					sc := bufio.NewScanner(r)
					for sc.Scan() {
						write(logs, "out:"+name+":"+sc.Text())
					}
				}(c.Name, os.NewFile(uintptr(p[0]), "out"))
				if len(dieOnStart) > 0 {
					// Forked, then died before saying so.
					appendLine(dieOnStart[0], strconv.Itoa(pid))
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
				pids[c.Name], names[pid] = pid, c.Name
				write(status, fmt.Sprintf(`{"status":"started","name":%q,"pid":%d}`, c.Name, pid))
			case "stop":
				if pid, ok := pids[c.Name]; ok {
					syscall.Kill(-pid, syscall.SIGTERM)
				} else {
					write(logs, "err:-:unknown service "+c.Name)
				}
			}
		}
	}
}

// proxyWords is the proxy cmd= value for the test proxy.
func proxyWords(mode string) string {
	return helperCmd(mode)
}

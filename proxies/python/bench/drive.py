#!/usr/bin/env python3
"""drive: one run of the memory benchmark (see ../bench-mem.sh).

    drive.py --mode proxy|independent|gunicorn|single --data objects|blob
             [--workers 16] [--mb 200] [--python PY]

Starts a pool of workers that all hold the same BENCH_MB of data (memapp),
and prints one JSON object: how long until every worker ran, and the total
PSS, RSS and private memory of the pool (its parent included: the proxy or
gunicorn's master) idle, after gc.collect() in every worker, and after
every worker has read all the data once. Modes:

proxy        cfk_proxy.py --preload memapp, driven as cfkd drives it (three
             pipes), workers cmd=memapp:worker
proxy-nofreeze  the same, each worker calling gc.unfreeze() first: what
             the proxy's gc.freeze saves
independent  N python3 processes, each loading the data itself
gunicorn     gunicorn --preload -w N (sync workers) serving memapp:application
single       one python3 process alone: the reference "one worker"
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join(os.path.dirname(HERE), "cfk_proxy.py")
sys.path.insert(0, HERE)

# The signals memapp installs (SIGRTMIN+1, +2), without loading its data.
GC_SIGNAL = signal.SIGRTMIN + 1
READ_SIGNAL = signal.SIGRTMIN + 2

SETTLE_SECONDS = 1.0
STEP_TIMEOUT_SECONDS = 300.0


def memory_kib(pid):
    """memory_kib reads a process's Pss, Rss and private memory."""
    m = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                m[parts[0][:-1]] = int(parts[1])
    return {"pss": m["Pss"], "rss": m["Rss"], "private": m["Private_Clean"] + m["Private_Dirty"]}


def pool_mib(pids):
    total = {"pss": 0, "rss": 0, "private": 0}
    for pid in pids:
        for k, v in memory_kib(pid).items():
            total[k] += v
    return {k: round(v / 1024, 1) for k, v in total.items()}


def wait_markers(markers, step, n):
    """wait_markers waits for n STEP.PID files and returns the pids."""
    deadline = time.monotonic() + STEP_TIMEOUT_SECONDS
    while True:
        pids = [int(name.split(".", 1)[1]) for name in os.listdir(markers) if name.startswith(step + ".")]
        if len(pids) >= n:
            return sorted(pids)
        if time.monotonic() > deadline:
            raise SystemExit("drive: only %d of %d workers reached %s" % (len(pids), n, step))
        time.sleep(0.005)


def drain(fd, into):
    """drain reads a pipe from the proxy until it closes, so that the
    proxy never has to drop anything."""
    buf = b""
    while True:
        data = os.read(fd, 65536)
        if not data:
            return
        buf += data
        *lines, buf = buf.split(b"\n")
        into.extend(lines)


class ProxyPool:
    """ProxyPool plays cfkd: it starts cfk_proxy.py with three pipes and
    asks it for the workers."""

    def __init__(self, python, n, env, worker_env):
        cmd_r, self.cmd_w = os.pipe()
        status_r, status_w = os.pipe()
        log_r, log_w = os.pipe()
        env = dict(env, _CFK_COMMAND_FD=str(cmd_r), _CFK_STATUS_FD=str(status_w), _CFK_LOG_FD=str(log_w))
        self.logs, self.statuses = [], []
        t0 = time.monotonic()
        self.proc = subprocess.Popen([python, PROXY, "--preload", "memapp", "--path", HERE],
                                     pass_fds=(cmd_r, status_w, log_w), env=env, stdin=subprocess.DEVNULL)
        for fd in (cmd_r, status_w, log_w):
            os.close(fd)
        for fd, into in ((status_r, self.statuses), (log_r, self.logs)):
            threading.Thread(target=drain, args=(fd, into), daemon=True).start()
        while not any(line.startswith(b"out:-:preloaded") for line in list(self.logs)):
            if self.proc.poll() is not None:
                raise SystemExit("drive: the proxy exited: %s" % self.logs)
            time.sleep(0.005)
        self.preload_s = time.monotonic() - t0
        note = next(line for line in list(self.logs) if line.startswith(b"out:-:preloaded"))
        self.frozen = int(note.split(b"; ")[1].split()[0])  # "...; N objects frozen"
        self.forks_t0 = time.monotonic()
        for i in range(n):
            line = json.dumps({"command": "start", "name": "w%02d" % i, "cmd": "memapp:worker", "env": worker_env,
                               "tie_stdin_to": None, "ignore_stdout": 0, "ignore_stderr": 0,
                               "no_new_session": 0})
            os.write(self.cmd_w, line.encode() + b"\n")
        self.parent = self.proc.pid

    def stop(self):
        os.close(self.cmd_w)  # EOF: the proxy stops its workers and exits
        self.proc.wait(timeout=30)


class ProcessPool:
    """ProcessPool is N independent python3 processes, or gunicorn."""

    def __init__(self, argv_list, env, parent=False):
        self.procs = [subprocess.Popen(argv, env=env, cwd=HERE, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for argv in argv_list]
        self.parent = self.procs[0].pid if parent else None

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run(args):
    markers = tempfile.mkdtemp(prefix="cfk-bench-")
    env = dict(os.environ, BENCH_DATA=args.data, BENCH_MB=str(args.mb), BENCH_MARKERS=markers,
               PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    n = 1 if args.mode == "single" else args.workers
    result = {"mode": args.mode, "data": args.data, "workers": n, "mb": args.mb,
              "load1": round(os.getloadavg()[0], 1)}
    t0 = time.monotonic()
    worker_cmd = [args.python, "-c", "import memapp; memapp.worker()"]
    if args.mode in ("proxy", "proxy-nofreeze"):
        pool = ProxyPool(args.python, n, env, {"BENCH_UNFREEZE": "1"} if args.mode == "proxy-nofreeze" else {})
    elif args.mode in ("independent", "single"):
        pool = ProcessPool([worker_cmd] * n, env)
    elif args.mode == "gunicorn":
        sock = os.path.join(markers, "g.sock")
        pool = ProcessPool([[args.python, "-m", "gunicorn", "--preload", "-w", str(n), "-b", "unix:" + sock,
                             "--timeout", "600", "-c", os.path.join(HERE, "gunicorn_conf.py"),
                             "memapp:application"]], env, parent=True)
    else:
        raise SystemExit("drive: unknown mode %s" % args.mode)
    try:
        pids = wait_markers(markers, "ready", n)
        result["start_s"] = round(time.monotonic() - t0, 2)
        if isinstance(pool, ProxyPool):
            result["preload_s"] = round(pool.preload_s, 2)
            result["forks_s"] = round(time.monotonic() - pool.forks_t0, 3)
            result["frozen"] = pool.frozen
        everyone = pids + ([pool.parent] if pool.parent else [])
        time.sleep(SETTLE_SECONDS)
        result["idle"] = pool_mib(everyone)
        for step, sig in (("gc", GC_SIGNAL), ("read", READ_SIGNAL)):
            t = time.monotonic()
            for pid in pids:
                os.kill(pid, sig)
            wait_markers(markers, step, n)
            result[step + "_s"] = round(time.monotonic() - t, 2)
            time.sleep(SETTLE_SECONDS)
            result["after_" + step] = pool_mib(everyone)
    finally:
        pool.stop()
        for name in os.listdir(markers):
            os.unlink(os.path.join(markers, name))
        os.rmdir(markers)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", required=True, choices=("proxy", "proxy-nofreeze", "independent", "gunicorn", "single"))
    p.add_argument("--data", required=True, choices=("objects", "blob"))
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--mb", type=int, default=200)
    p.add_argument("--python", default=sys.executable)
    print(json.dumps(run(p.parse_args())), flush=True)


if __name__ == "__main__":
    main()

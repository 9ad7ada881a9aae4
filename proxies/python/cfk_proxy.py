#!/usr/bin/env python3
"""cfk_proxy: a ControlFreak proxy that forks Python workers from one
preloaded interpreter, so that every worker shares the application's memory
copy-on-write.

cfkd starts this program for `proxy NAME cmd=["python3","cfk_proxy.py",
"--preload","app"]` and talks to it over three pipes (proxies/PROTOCOL.md):
JSON commands in, JSON statuses and `TYPE:SERVICE:MESSAGE` log lines out.
Standard library only; Linux only (/proc, setsid, fork).

Usage
-----
    cfk_proxy.py [--preload MOD[,MOD...]]... [--path DIR]... [--stop-wait SECS]

--preload  modules imported once, in the proxy, before any worker is forked
           (a name containing "/" or ending in ".py" is loaded from that
           file). An error while preloading is printed to stderr and logged
           as `err:-:`, and the proxy exits 1.
--path     directories put in front of sys.path (the current directory is
           added too; PYTHONPATH from the proxy's add_env works as usual).
--stop-wait seconds the proxy waits, when it stops, between TERM and KILL
           for its workers (default 5).

What a service's cmd means
--------------------------
cmd is a string or a list of strings. A string is split on whitespace
unless it needs a shell (ControlFreak's rule, Perl's exec rule: one of
$&*(){}[]'";\\|?<>~ backquote or newline, a leading VAR=value word, or a
leading `exec` or `.` word), in which case it runs as `/bin/sh -c CMD`.
Then, by the first word:

* `module:function` (e.g. `app:main`, `app.wsgi:server.run`): the worker
  imports the module (already in sys.modules when it was preloaded: nothing
  is loaded again) and calls the function with no arguments. Its return
  value is the exit code (None = 0, like sys.exit). sys.argv is the cmd.
* a path ending in `.py`: the worker runs that file inside the preloaded
  interpreter with runpy.run_path(path, run_name="__main__"), sys.argv set
  to the cmd and the file's directory first on sys.path, as `python3 FILE`
  would.
* anything else: os.execvp. This is only a fallback: exec replaces the
  preloaded interpreter, so nothing is shared with the proxy any more.

An uncaught exception is printed to the worker's stderr and the exit code
is 1; SystemExit behaves as in any Python program. A start the proxy cannot
carry out (a bad cmd, an unknown socket) is logged as `err:NAME:` and
reported as a worker that exited with code 127, so that cfkd's state machine
(backoff, fatal) sees it like any failed start. An exec that fails exits 127
(126 when the file is not executable), as a shell does.

The protocol, as this proxy speaks it
------------------------------------
* One loop (selectors) reads commands, the workers' output and the
  self-pipe that signal.set_wakeup_fd fills on SIGCHLD, TERM, INT and HUP;
  workers are reaped there with waitpid(-1, WNOHANG).
* Statuses are never dropped: they wait in memory until cfkd reads them.
  Log lines wait too, up to 1 MiB; beyond that they are dropped and counted,
  and `err:-:N log lines dropped` is written once cfkd reads again.
* Each exit of a started worker is reported once as `stopped` with the raw
  wait status (exit code x 256, or the signal number).
* `stop` TERMs the newest live worker of that name (its process group, or
  the worker alone under no_new_session), as the original proxy did; an
  unknown name is an `err:-:` line, as are malformed or unknown commands.
* TERM, INT or HUP to the proxy, or EOF on the command pipe: every worker is
  TERMed, its exit reported; after --stop-wait seconds what is left is
  KILLed; then the proxy exits 0.

The worker process
------------------
After os.fork(), before the service's code runs:
* the proxy's signal handlers (CHLD, TERM, INT, HUP) go back to what a fresh
  python3 has (SIG_DFL; SIGINT raises KeyboardInterrupt), the signal mask is
  cleared, and the self-pipe wake-up fd is dropped. So TERM kills a worker
  that installs no handler of its own (wait status 15). Handlers the preload
  installed for other signals are inherited, as every other preloaded state.
  Signals are blocked across fork, so a `stop` that races with a start is
  held until the worker is ready and then delivered.
* setsid(), unless no_new_session: the worker leads its own session and
  process group, which is what `stop` signals.
* fds: 0 is the tie_stdin_to socket or /dev/null; 1 and 2 are pipes to the
  proxy (each line becomes an `out:NAME:` / `err:NAME:` log line) or
  /dev/null when ignored; the `sockets` are dup'ed to 3, 4, ... in order.
  Every other fd is closed: the worker gets nothing of the proxy's (its
  pipes to cfkd, other workers' pipes, other sockets). Beware of preloaded
  objects that own an fd (an open file, a database connection, a
  file-backed mmap, which keeps its own copy of the fd): that fd is closed
  in the worker, so reopen such things in the worker. The mapping of a
  mmap stays valid, but do not let such an object be closed or collected in
  the worker, since its fd number may by then belong to something else.
* environment: os.environ gets the service's env, CONTROL_FREAK_ENABLED=1,
  CONTROL_FREAK_SERVICE=NAME, and with `sockets` LISTEN_FDS, LISTEN_FDNAMES
  and LISTEN_PID (the worker's own pid); the proxy's `_CFK_*` variables and
  any stray LISTEN_* are removed. TZ is re-read (time.tzset), and
  PYTHONUNBUFFERED makes stdout and stderr unbuffered as `python3 -u`
  does, since the interpreter read both at its start, long before this
  worker existed. Otherwise stdout is block-buffered, as in any python3
  writing to a pipe: flush, or lose the tail of the output to a SIGTERM.
* process name: setproctitle is not in the standard library, so the worker
  writes `[cfk NAME] CMD` to /proc/self/comm, which the kernel cuts to 15
  bytes. `ps -o comm`, top and `pgrep` show it; the full command line that
  `ps aux` shows stays the proxy's.
* exit: the worker waits for its own non-daemon threads, runs the atexit
  handlers it registered itself (the proxy's, inherited through the fork,
  are dropped: they belong to the proxy), flushes stdout and stderr and
  leaves with os._exit, so that nothing of the proxy (its atexit handlers,
  finalizers, buffered output) runs a second time. This is what
  multiprocessing does for its forked children.
* threads do not survive fork: a preload must not start threads that
  workers rely on; start them in the worker.

Sharing memory, and what gc.freeze does
---------------------------------------
A forked worker shares every page of the proxy until one of the two writes
to it; then the kernel copies that 4 KiB page for the writer. CPython writes
to objects it only reads: every reference taken (a name lookup, an
iteration, an attribute access, passing an argument) increments the
object's reference count, which lives in the object's header. And the
cyclic garbage collector, when it runs in a worker, writes a scratch count
(gc_refs) into the header of every container object it examines and relinks
objects between its generation lists.

Before forking anything the proxy runs `gc.collect(); gc.freeze()` (with
the collector disabled while the preload runs, so that it does not run
half-way and leave holes). gc.freeze moves every object the collector
tracks into a permanent generation that later collections never examine:
a collection in a worker no longer writes to the preloaded objects, so the
collector alone no longer unshares their pages. gc.get_freeze_count() says
how many objects are frozen.

What gc.freeze does not protect: reference counting. A worker that touches
preloaded objects still writes their headers, and each page with a touched
object is copied. Millions of small objects (a dict of 2 million str keys
and int or tuple values) are spread over tens of thousands of pages; a
worker that reads all of them once ends up with its own copy of nearly
all of them, just as if it had loaded the data itself. Freeing preloaded
objects in a worker, and new allocations that land in the holes of
preloaded memory pools, unshare pages too.

How an application keeps bulk data shared: keep it in a few big objects
whose payload is never written: bytes, bytearray, array.array, a
memoryview over them, or a mmap of a file. Reading such an object touches
the refcount of its one header, not the megabytes behind it, so the payload
pages stay shared however often workers read them. Pack records into a
bytes blob (struct, fixed-size rows, offsets in an array.array, bisect over
a sorted array for look-ups) rather than building millions of Python
objects. A read-only mmap of a file is shared through the page cache even
between processes that do not fork from each other, and survives worker
restarts.

Memory: see BENCH.md next to this file.
"""

import argparse
import atexit
import fcntl
import gc
import importlib
import importlib.util
import io
import json
import os
import re
import runpy
import selectors
import signal
import sys
import time
import traceback

# Where the protocol puts things (proxies/PROTOCOL.md).
ENV_COMMAND_FD = "_CFK_COMMAND_FD"
ENV_STATUS_FD = "_CFK_STATUS_FD"
ENV_LOG_FD = "_CFK_LOG_FD"
ENV_SOCK_PREFIX = "_CFK_SOCK_"

# sd_listen_fds(3): the first passed fd.
LISTEN_FDS_START = 3
LISTEN_ENV = ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID")

# MAX_LOG_LINE_BYTES bounds one log line on the wire, newline included, so
# that cfkd (which reads log lines in 16 KiB pieces) gets it whole; a
# longer line of output is logged in pieces.
MAX_LOG_LINE_BYTES = 16 << 10
# READ_BYTES is one read from a pipe.
READ_BYTES = 64 << 10
# MAX_LOG_BUFFER_BYTES bounds the log lines waiting for cfkd to read them;
# beyond it lines are dropped and counted. Statuses are never dropped.
MAX_LOG_BUFFER_BYTES = 1 << 20
# MAX_COMMAND_BYTES bounds one command line from cfkd.
MAX_COMMAND_BYTES = 1 << 20
# STOP_WAIT_SECONDS is the default time between TERM and KILL when the
# proxy stops; KILL_WAIT_SECONDS how long it then waits for the last exits.
STOP_WAIT_SECONDS = 5.0
KILL_WAIT_SECONDS = 1.0
# EARLY_EXITS_KEPT bounds the exits of unknown pids kept for a start that
# is recorded after its worker was reaped.
EARLY_EXITS_KEPT = 256
# COMM_MAX_BYTES is the kernel's limit for /proc/self/comm (TASK_COMM_LEN-1).
COMM_MAX_BYTES = 15
# MAX_QUOTED bounds what an error message echoes of bad input.
MAX_QUOTED = 80

# Exit codes for a start that cannot be carried out, as a shell uses them.
EXIT_CANNOT_RUN = 127
EXIT_NOT_EXECUTABLE = 126

# The signals the proxy handles; blocked across fork.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HANDLED_SIGNALS = (signal.SIGCHLD,) + STOP_SIGNALS

# `module:function`, both dotted paths of identifiers.
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
CALLABLE_RE = re.compile(r"\A" + _DOTTED + ":" + _DOTTED + r"\Z")
# Perl's exec (and so ControlFreak's cmd) uses a shell for these.
SHELL_METACHARS = frozenset("$&*(){}[]'\";\\|?<>~`\n")
ENV_ASSIGNMENT_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*=")


def clip(value):
    """clip makes untrusted input safe to echo in one log line."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > MAX_QUOTED:
        text = text[:MAX_QUOTED] + "..."
    return "".join(c if " " <= c != "\x7f" else "?" for c in text)


def truthy(value):
    """truthy reads a boolean as the original's Perl values mean it: 0, "",
    "0", null and false are false."""
    return bool(value) and value != "0"


def needs_shell(text):
    """needs_shell is ControlFreak's (Perl exec's) rule for a cmd string."""
    if any(c in SHELL_METACHARS for c in text):
        return True
    words = text.split()
    return bool(words) and (words[0] in ("exec", ".") or bool(ENV_ASSIGNMENT_RE.match(words[0])))


class Plan:
    """Plan is what a worker runs: kind is "call" (a module:function),
    "run" (a .py file in this interpreter) or "exec"; argv becomes
    sys.argv (or the exec'd argv)."""

    __slots__ = ("kind", "argv")

    def __init__(self, kind, argv):
        self.kind = kind
        self.argv = argv

    def __repr__(self):
        return "Plan(%r, %r)" % (self.kind, self.argv)

    @classmethod
    def parse(cls, cmd):
        """parse reads a service's cmd; it raises ValueError for a cmd that
        is neither a non-empty string nor a non-empty list of strings."""
        if isinstance(cmd, str):
            text = cmd.strip()
            if not text:
                raise ValueError("cmd is empty")
            if needs_shell(text):
                return cls("exec", ["/bin/sh", "-c", text])
            argv = text.split()
        elif isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd) and cmd[0]:
            argv = list(cmd)
        else:
            raise ValueError("cmd must be a string or a list of strings, not %s" % clip(cmd))
        if CALLABLE_RE.match(argv[0]):
            return cls("call", argv)
        if argv[0].endswith(".py"):
            return cls("run", argv)
        return cls("exec", argv)

    def comm(self, name):
        """comm is the worker's process name: `[cfk NAME] CMD`, which the
        kernel cuts to COMM_MAX_BYTES."""
        word = self.argv[0] if self.kind != "exec" else os.path.basename(self.argv[0])
        return "[cfk %s] %s" % (name, word)

    def run(self):
        """run runs the plan in this (worker) process and returns the exit
        code; exec does not return unless it fails."""
        if self.kind == "call":
            module_name, _, attr = self.argv[0].partition(":")
            target = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
            sys.argv = list(self.argv)
            return exit_code(target())
        if self.kind == "run":
            path = self.argv[0]
            sys.argv = list(self.argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
            runpy.run_path(path, run_name="__main__")
            return 0
        # exec: the new program gets the signal dispositions a program
        # expects, not the ones Python sets for itself.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        flush_std_streams()
        try:
            os.execvp(self.argv[0], self.argv)
        except OSError as e:
            print("cfk_proxy: cannot run %s: %s" % (self.argv[0], e.strerror), file=sys.stderr)
            return EXIT_NOT_EXECUTABLE if isinstance(e, PermissionError) else EXIT_CANNOT_RUN


def exit_code(value):
    """exit_code turns a return value or a SystemExit code into an exit
    code, as sys.exit does: None is 0, an int is itself, anything else is
    printed to stderr and is 1."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def split_lines(partial, data, limit):
    """split_lines cuts output into log messages: it returns the complete
    lines of partial+data (without "\\n" or a trailing "\\r"; a line longer
    than limit comes in pieces of limit bytes) and what is left, a partial
    line shorter than limit."""
    buf = partial + data
    parts = buf.split(b"\n")
    rest = parts.pop()
    lines = []
    for line in parts:
        if line.endswith(b"\r"):
            line = line[:-1]
        while len(line) > limit:
            lines.append(line[:limit])
            line = line[limit:]
        lines.append(line)
    while len(rest) >= limit:
        lines.append(rest[:limit])
        rest = rest[limit:]
    return lines, rest


class Outbox:
    """Outbox is a non-blocking, buffered writer for a pipe to cfkd. With a
    limit, what does not fit is dropped and counted, and a note about the
    loss is written once the buffer drains; without one nothing is ever
    dropped."""

    def __init__(self, fd, limit=None):
        self.fd = fd
        self.buf = bytearray()
        self.limit = limit
        self.dropped = 0
        self.broken = False

    def put(self, data):
        """put queues data; it returns False when data was dropped."""
        if self.broken:
            return False
        if self.limit is not None and len(self.buf) + len(data) > self.limit:
            self.dropped += 1
            return False
        self.buf += data
        return True

    @property
    def pending(self):
        return bool(self.buf) and not self.broken

    def flush(self):
        """flush writes what the pipe takes without blocking."""
        while self.buf and not self.broken:
            try:
                n = os.write(self.fd, self.buf)
            except BlockingIOError:
                return
            except OSError:
                # EPIPE: cfkd closed its end; nobody will read this.
                self.broken = True
                self.buf.clear()
                return
            del self.buf[:n]
            if not self.buf and self.dropped:
                self.buf += b"err:-:%d log lines dropped: cfkd was not reading them\n" % self.dropped
                self.dropped = 0


class OutputPipe:
    """OutputPipe is the proxy's end of a worker's stdout or stderr."""

    __slots__ = ("fd", "prefix", "partial")

    def __init__(self, fd, kind, name):
        self.fd = fd
        self.prefix = b"%s:%s:" % (kind, name.encode("utf-8", "replace"))
        self.partial = b""


class Worker:
    """Worker is a forked service: its pid, whether it leads its own process
    group, and its output pipes."""

    __slots__ = ("name", "pid", "own_group", "pipes")

    def __init__(self, name, pid, own_group, pipes):
        self.name = name
        self.pid = pid
        self.own_group = own_group
        self.pipes = pipes


class StartRequest:
    """StartRequest is a checked start command. problem says why it cannot
    be carried out (the worker then exits EXIT_CANNOT_RUN)."""

    def __init__(self, msg, sockets):
        self.name = msg.get("name")
        self.plan = None
        self.env = {}
        self.stdin_fd = None
        self.socket_names = []
        self.socket_fds = []
        self.ignore_stdout = truthy(msg.get("ignore_stdout"))
        self.ignore_stderr = truthy(msg.get("ignore_stderr"))
        self.no_new_session = truthy(msg.get("no_new_session"))
        self.problem = None
        try:
            self.plan = Plan.parse(msg.get("cmd"))
            self.env = self._env(msg.get("env"))
            tie = msg.get("tie_stdin_to")
            if tie not in (None, ""):
                self.stdin_fd = self._socket(tie, sockets)
            names = msg.get("sockets") or []
            if not isinstance(names, list):
                raise ValueError("sockets must be a list of socket names")
            for n in names:
                self.socket_fds.append(self._socket(n, sockets))
                self.socket_names.append(n)
        except ValueError as e:
            self.problem = str(e)

    @staticmethod
    def _env(env):
        if env in (None, ""):
            return {}
        if not isinstance(env, dict):
            raise ValueError("env must be an object")
        out = {}
        for k, v in env.items():
            if not k or "=" in k or "\0" in k:
                raise ValueError("invalid environment variable name '%s'" % clip(k))
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise ValueError("environment variable '%s' has no string value" % clip(k))
            v = str(v)
            if "\0" in v:
                raise ValueError("environment variable '%s' holds a NUL byte" % clip(k))
            out[k] = v
        return out

    @staticmethod
    def _socket(name, sockets):
        if not isinstance(name, str) or name not in sockets:
            raise ValueError("unknown socket '%s' (is it bound?)" % clip(name))
        return sockets[name]


def sockets_from_environ(environ):
    """sockets_from_environ maps socket names to the fds cfkd passed."""
    sockets = {}
    for key, value in environ.items():
        if key.startswith(ENV_SOCK_PREFIX) and len(key) > len(ENV_SOCK_PREFIX):
            try:
                sockets[key[len(ENV_SOCK_PREFIX):]] = int(value)
            except ValueError:
                pass
    return sockets


def fd_from_environ(environ, key):
    value = environ.get(key)
    if value is None:
        raise ValueError("%s is not set: this program is started by cfkd" % key)
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError):
        raise ValueError("%s=%s is not an open fd" % (key, clip(value))) from None
    return fd


def flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def open_fds():
    """open_fds lists this process's fds (the listing's own fd, closed by
    then, may be among them)."""
    try:
        return [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return None


def arrange_fds(sources):
    """arrange_fds makes sources[i] fd i, for every i, and closes every
    other fd. Each source is first copied above the target range, so that
    placing one never overwrites another that is still to be placed (a
    socket passed as fd 4 that must become fd 3, while fd 3 must become
    fd 4)."""
    n = len(sources)
    lifted = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, n) for fd in sources]
    for target, fd in enumerate(lifted):
        os.dup2(fd, target, inheritable=True)
    fds = open_fds()
    if fds is None:
        os.closerange(n, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in fds:
        if fd >= n:
            try:
                os.close(fd)
            except OSError:
                pass


def set_comm(text):
    """set_comm names this process for ps -o comm, top and pgrep."""
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(text.encode("utf-8", "replace")[:COMM_MAX_BYTES])
    except OSError:
        pass


def unbuffer_std_streams():
    """unbuffer_std_streams makes stdout and stderr what `python3 -u` makes
    them: text written through to unbuffered fds 1 and 2."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        if old is None or isinstance(getattr(old, "buffer", None), io.FileIO):
            continue  # gone, or unbuffered already
        old.flush()
        raw = io.FileIO(fd, "w", closefd=False)
        setattr(sys, name, io.TextIOWrapper(raw, encoding=old.encoding, errors=old.errors,
                                            write_through=True))


def finish_worker():
    """finish_worker does what a Python program does on its way out, minus
    the proxy's share: wait for non-daemon threads, run the worker's own
    atexit handlers, flush stdout and stderr."""
    threading = sys.modules.get("threading")
    if threading is not None:
        main = threading.main_thread()
        for t in threading.enumerate():
            if t is not main and not t.daemon:
                t.join()
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is not None:
        run_exitfuncs()
    flush_std_streams()


class Proxy:
    """Proxy is the proxy's one loop: commands from cfkd, worker output,
    signals and the writes to cfkd, all in one selector."""

    def __init__(self, command_fd, status_fd, log_fd, sockets, stop_wait):
        self.command_fd = command_fd
        self.status = Outbox(status_fd)
        self.log = Outbox(log_fd, MAX_LOG_BUFFER_BYTES)
        self.sockets = sockets
        self.stop_wait = stop_wait
        self.sel = selectors.DefaultSelector()
        self.workers = {}  # pid -> Worker
        self.pipes = {}  # fd -> OutputPipe
        self.early_exits = {}  # pid -> wait status of a pid not yet known
        self.command_buf = bytearray()
        self.discarding = False  # inside a command line that was too long
        self.writing = set()  # outbox fds registered for EVENT_WRITE
        self.signals = set()
        self.stopping = False
        self.term_deadline = None
        self.kill_deadline = None
        for fd in (command_fd, status_fd, log_fd):
            os.set_blocking(fd, False)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ---- the loop

    def run(self):
        """run serves cfkd until told to stop; it returns the exit code."""
        self.sel.register(self.command_fd, selectors.EVENT_READ, self.on_command)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self.on_wake)
        # The C-level handler writes a byte to wake_w, which wakes select;
        # the Python-level handler records which signal it was.
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self.on_signal)
        self.reap()  # anything that exited before the handler was in place
        while True:
            self.handle_signals()
            self.flush()
            if self.stopping and self.stopped():
                return 0
            for key, mask in self.sel.select(self.timeout()):
                key.data(key.fd, mask)
            self.handle_signals()
            if self.given_up():
                return 0

    def on_signal(self, signum, frame):
        self.signals.add(signum)

    def on_wake(self, fd, mask):
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def handle_signals(self):
        if not self.signals:
            return
        seen, self.signals = self.signals, set()
        self.reap()
        for sig in STOP_SIGNALS:
            if sig in seen:
                self.begin_stop("got %s" % signal.Signals(sig).name)

    def timeout(self):
        deadline = self.kill_deadline or self.term_deadline
        if deadline is None:
            return None
        return max(0.0, deadline - time.monotonic())

    def flush(self):
        for box in (self.status, self.log):
            box.flush()
            want = box.pending
            if want and box.fd not in self.writing:
                self.sel.register(box.fd, selectors.EVENT_WRITE, self.on_writable)
                self.writing.add(box.fd)
            elif not want and box.fd in self.writing:
                self.sel.unregister(box.fd)
                self.writing.discard(box.fd)
        if self.status.broken and not self.stopping:
            self.begin_stop("cfkd stopped reading statuses")

    def on_writable(self, fd, mask):
        pass  # flush() runs at the top of every turn

    # ---- to cfkd

    def send_status(self, obj):
        self.status.put(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def service_log(self, kind, service, message):
        """service_log writes one log line of the proxy's own making."""
        prefix = b"%s:%s:" % (kind, service.encode("utf-8", "replace"))
        message = message.replace("\n", " ").encode("utf-8", "replace")
        self.log.put(prefix + message[:MAX_LOG_LINE_BYTES - len(prefix) - 1] + b"\n")

    def note(self, message):
        self.service_log(b"out", "-", message)

    def complain(self, message):
        self.service_log(b"err", "-", message)

    # ---- commands

    def on_command(self, fd, mask):
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(fd)
            self.begin_stop("the command pipe was closed")
            return
        buf = self.command_buf
        buf += data
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line = bytes(buf[:i])
            del buf[:i + 1]
            if self.discarding:
                self.discarding = False
                continue
            self.command(line)
        if len(buf) > MAX_COMMAND_BYTES:
            self.complain("command line longer than %d bytes dropped" % MAX_COMMAND_BYTES)
            buf.clear()
            self.discarding = True

    def command(self, line):
        line = line.strip()
        if not line:
            return
        try:
            msg = json.loads(line)
        except ValueError:
            self.complain("malformed command '%s'" % clip(line))
            return
        if not isinstance(msg, dict):
            self.complain("malformed command '%s'" % clip(line))
            return
        verb = msg.get("command")
        if verb == "start":
            self.start(msg)
        elif verb == "stop":
            self.stop(msg.get("name"))
        else:
            self.complain("unknown command '%s'" % clip(verb))

    def start(self, msg):
        name = msg.get("name")
        if not isinstance(name, str) or not name or any(c in name for c in ":\n\r\0"):
            self.complain("start: invalid service name '%s'" % clip(name))
            return
        if self.stopping:
            self.complain("start %s: the proxy is stopping" % name)
            return
        req = StartRequest(msg, self.sockets)
        if req.problem:
            # Logged by the proxy, since the worker's stderr may be ignored.
            self.service_log(b"err", name, "cannot start: " + req.problem)
        self.spawn(req)

    def spawn(self, req):
        ends = []  # (kind, read end, write end)
        try:
            for kind, ignored in ((b"out", req.ignore_stdout), (b"err", req.ignore_stderr)):
                if not ignored:
                    r, w = os.pipe()
                    ends.append((kind, r, w))
        except OSError as e:
            for _, r, w in ends:
                os.close(r)
                os.close(w)
            self.complain("cannot start %s: pipe: %s" % (req.name, e.strerror))
            return
        write_end = {kind: w for kind, _, w in ends}
        flush_std_streams()
        # An exit reaped before this fork cannot be the new worker's, even if
        # the kernel reuses the pid of a process that exited earlier.
        self.early_exits.clear()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for _, r, w in ends:
                os.close(r)
                os.close(w)
            self.complain("cannot start %s: fork: %s" % (req.name, e.strerror))
            return
        if pid == 0:
            self.become_worker(req, write_end.get(b"out"), write_end.get(b"err"))
            os._exit(1)  # not reached
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        pipes = []
        for kind, r, w in ends:
            os.close(w)
            os.set_blocking(r, False)
            pipe = OutputPipe(r, kind, req.name)
            self.pipes[r] = pipe
            self.sel.register(r, selectors.EVENT_READ, self.on_output)
            pipes.append(pipe)
        self.workers[pid] = Worker(req.name, pid, not req.no_new_session, pipes)
        self.send_status({"status": "started", "name": req.name, "pid": pid})
        if pid in self.early_exits:
            self.exited(self.workers.pop(pid), self.early_exits.pop(pid))

    def stop(self, name):
        # The newest worker of that name, as the original proxy did (its
        # table held one worker a name, the last started). cfkd counts on
        # it: when a start it gave up on reports late, it stops the name to
        # get rid of the newest, unasked worker, not of the one it adopted.
        for w in reversed(list(self.workers.values())):
            if w.name == name:
                self.signal_worker(w, signal.SIGTERM)
                return
        self.complain("stop: unknown service '%s'" % clip(name))

    def signal_worker(self, worker, sig):
        if worker.own_group:
            try:
                os.killpg(worker.pid, sig)
                return
            except ProcessLookupError:
                # The worker has not called setsid yet; its signals are
                # blocked until it has, so this one waits for it.
                pass
            except OSError as e:
                self.complain("cannot signal %s (group %d): %s" % (worker.name, worker.pid, e.strerror))
                return
        try:
            os.kill(worker.pid, sig)
        except ProcessLookupError:
            pass
        except OSError as e:
            self.complain("cannot signal %s (pid %d): %s" % (worker.name, worker.pid, e.strerror))

    # ---- worker output

    def on_output(self, fd, mask):
        pipe = self.pipes.get(fd)
        if pipe is not None:
            self.read_output(pipe)

    def read_output(self, pipe):
        """read_output logs what the pipe holds; at end of file it logs the
        last partial line and closes the pipe."""
        while True:
            try:
                data = os.read(pipe.fd, READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                if pipe.partial:
                    self.emit(pipe, pipe.partial)
                    pipe.partial = b""
                self.sel.unregister(pipe.fd)
                del self.pipes[pipe.fd]
                os.close(pipe.fd)
                return
            lines, pipe.partial = split_lines(pipe.partial, data, self.line_limit(pipe))
            for line in lines:
                self.emit(pipe, line)
            if len(data) < READ_BYTES:
                return

    @staticmethod
    def line_limit(pipe):
        return MAX_LOG_LINE_BYTES - len(pipe.prefix) - 1

    def emit(self, pipe, line):
        self.log.put(pipe.prefix + line + b"\n")

    # ---- exits

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                self.early_exits[pid] = status
                while len(self.early_exits) > EARLY_EXITS_KEPT:
                    del self.early_exits[next(iter(self.early_exits))]
                continue
            self.exited(worker, status)

    def exited(self, worker, status):
        # What the worker wrote before it died is logged before its exit is
        # reported; a partial line is not kept waiting for a grandchild that
        # may hold the pipe open.
        for pipe in worker.pipes:
            if self.pipes.get(pipe.fd) is pipe:
                self.read_output(pipe)
                if pipe.partial and self.pipes.get(pipe.fd) is pipe:
                    self.emit(pipe, pipe.partial)
                    pipe.partial = b""
        self.send_status({"status": "stopped", "name": worker.name, "pid": worker.pid,
                          "exit_status": status})

    # ---- stopping

    def begin_stop(self, why):
        if self.stopping:
            return
        self.stopping = True
        self.note("stopping (%s): %d worker(s) to stop" % (why, len(self.workers)))
        if self.command_fd in self.sel.get_map():
            self.sel.unregister(self.command_fd)
        for w in list(self.workers.values()):
            self.signal_worker(w, signal.SIGTERM)
        self.term_deadline = time.monotonic() + self.stop_wait

    def stopped(self):
        return not self.workers and not self.status.pending and not self.log.pending

    def given_up(self):
        """given_up KILLs what is left once the stop wait is over, and
        reports True when the wait after KILL is over too."""
        now = time.monotonic()
        if self.kill_deadline is not None:
            return now >= self.kill_deadline
        if self.term_deadline is not None and now >= self.term_deadline:
            if self.workers:
                self.complain("%d worker(s) still up after %g s: KILL" % (len(self.workers), self.stop_wait))
            for w in list(self.workers.values()):
                self.signal_worker(w, signal.SIGKILL)
            self.kill_deadline = now + KILL_WAIT_SECONDS
        return False

    # ---- in the worker

    def become_worker(self, req, stdout_fd, stderr_fd):
        """become_worker turns the forked child into the service. It never
        returns."""
        code = 1
        try:
            try:
                signal.set_wakeup_fd(-1)
                for sig in HANDLED_SIGNALS:
                    signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
                clear = getattr(atexit, "_clear", None)
                if clear is not None:
                    clear()  # the proxy's handlers are the proxy's
                if not req.no_new_session:
                    os.setsid()
                # A stop sent before setsid waited, blocked; now it lands.
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                if req.problem:
                    code = EXIT_CANNOT_RUN
                    return
                self.prepare_worker(req, stdout_fd, stderr_fd)
                code = req.plan.run()
            except SystemExit as e:
                code = exit_code(e.code)
            except BaseException:
                traceback.print_exc()
                code = 1
            try:
                finish_worker()
            except BaseException:
                traceback.print_exc()
                flush_std_streams()
        finally:
            os._exit(code)

    def prepare_worker(self, req, stdout_fd, stderr_fd):
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        sources = [
            null if req.stdin_fd is None else req.stdin_fd,
            null if stdout_fd is None else stdout_fd,
            null if stderr_fd is None else stderr_fd,
        ] + req.socket_fds
        set_comm(req.plan.comm(req.name))
        arrange_fds(sources)
        env = os.environ
        for key in [k for k in env if k.startswith("_CFK_")] + list(LISTEN_ENV):
            env.pop(key, None)
        env.update(req.env)
        env["CONTROL_FREAK_ENABLED"] = "1"
        env["CONTROL_FREAK_SERVICE"] = req.name
        if req.socket_fds:
            env["LISTEN_FDS"] = str(len(req.socket_fds))
            env["LISTEN_FDNAMES"] = ":".join(req.socket_names)
            env["LISTEN_PID"] = str(os.getpid())
        if "TZ" in req.env:
            time.tzset()
        if env.get("PYTHONUNBUFFERED"):
            unbuffer_std_streams()


def preload(items):
    """preload imports each module once, in the proxy."""
    for item in items:
        if item.endswith(".py") or "/" in item:
            path = os.path.abspath(item)
            name = os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None:
                raise ImportError("cannot load %s" % item)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(item)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="cfk_proxy.py",
        description="ControlFreak proxy: forks Python workers from one preloaded interpreter.")
    p.add_argument("--preload", action="append", default=[], metavar="MOD[,MOD...]",
                   help="modules to import once in the proxy, before forking workers")
    p.add_argument("--path", action="append", default=[], metavar="DIR",
                   help="a directory to put in front of sys.path")
    p.add_argument("--stop-wait", type=float, default=STOP_WAIT_SECONDS, metavar="SECS",
                   help="seconds between TERM and KILL when the proxy stops (default %(default)s)")
    args = p.parse_args(argv)
    args.preload = [m.strip() for item in args.preload for m in item.split(",") if m.strip()]
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        command_fd = fd_from_environ(os.environ, ENV_COMMAND_FD)
        status_fd = fd_from_environ(os.environ, ENV_STATUS_FD)
        log_fd = fd_from_environ(os.environ, ENV_LOG_FD)
    except ValueError as e:
        print("cfk_proxy: %s" % e, file=sys.stderr)
        return 2
    sys.path[0:0] = [os.path.abspath(d) for d in args.path] + [os.getcwd()]

    # The collector stays off while the application loads, so that it does
    # not run half-way through and leave holes in the preloaded memory; then
    # one collection and freeze (see the module doc).
    gc.disable()
    started = time.monotonic()
    try:
        preload(args.preload)
    except BaseException as e:
        traceback.print_exc()
        msg = "preload %s failed: %s" % (",".join(args.preload), "".join(
            traceback.format_exception_only(type(e), e)).strip())
        try:
            os.write(log_fd, b"err:-:%s\n" % msg.replace("\n", " ").encode("utf-8", "replace")[:8000])
        except OSError:
            pass
        return 1
    gc.collect()
    gc.freeze()
    gc.enable()

    proxy = Proxy(command_fd, status_fd, log_fd, sockets_from_environ(os.environ), args.stop_wait)
    if args.preload:
        proxy.note("preloaded %s in %.2f s; %d objects frozen" % (
            ",".join(args.preload), time.monotonic() - started, gc.get_freeze_count()))
    return proxy.run()


if __name__ == "__main__":
    sys.exit(main())

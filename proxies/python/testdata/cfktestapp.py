"""cfktestapp is the application the proxy tests preload: each function is a
worker the tests start with cmd=cfktestapp:NAME."""

import gc
import os
import signal
import socket
import sys

# The pid that imported this module: the proxy's, if it was preloaded once.
LOADED_BY = os.getpid()


def hello():
    print("loaded-by", LOADED_BY, "pid", os.getpid(), "ppid", os.getppid(),
          "argv", " ".join(sys.argv), flush=True)


def exit3():
    return 3


def env():
    for key in ("FOO", "CONTROL_FREAK_ENABLED", "CONTROL_FREAK_SERVICE",
                "_CFK_COMMAND_FD", "_CFK_SOCK_web", "LISTEN_FDS", "LISTEN_PID"):
        print("%s=%s" % (key, os.environ.get(key, "<unset>")))


def output():
    sys.stdout.write("one\ntwo\r\n\n" + "x" * 40000 + "\npartial")
    sys.stderr.write("oops\n")


def sleep():
    print("ready", os.getpid(), flush=True)
    while True:
        signal.pause()


def stubborn():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sleep()


def frozen():
    print("frozen", gc.get_freeze_count(), "enabled", gc.isenabled())


def boom():
    raise ValueError("boom")


def bad_exit():
    sys.exit("a reason, not a number")


def stdin_echo():
    """Accepts one connection on fd 0, a listening socket, and answers."""
    ln = socket.socket(fileno=0)
    ln.setblocking(True)
    print("ready", flush=True)
    conn, _ = ln.accept()
    conn.sendall(b"hello from %d\n" % os.getpid())
    conn.close()


def listen_fds():
    """Accepts one connection on fd 3, systemd style, and answers."""
    print("LISTEN", os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_FDNAMES"),
          os.environ.get("LISTEN_PID"), os.getpid(), flush=True)
    ln = socket.socket(fileno=3)
    ln.setblocking(True)
    conn, _ = ln.accept()
    conn.sendall(b"fd3 %d\n" % os.getpid())
    conn.close()


def noisy():
    line = "n" * 99 + "\n"
    for _ in range(30000):
        sys.stdout.write(line)


def unbuffered():
    print("no flush needed")
    sys.stderr.write("nor here")
    sleep()

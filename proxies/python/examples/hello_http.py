"""hello_http: a tiny HTTP worker for cfk_proxy, without WSGI or gunicorn.

Each worker serves http.server on the listening socket cfkd hands it as
fd 3 (systemd style: LISTEN_FDS, LISTEN_PID), in the classic pre-fork way:
every worker blocks in accept() on the same socket and the kernel gives
each connection to one of them. The module is preloaded once by the proxy;
its state (here PAGES) is shared by every worker.

    socket http host=127.0.0.1
    socket http service=8080
    proxy web cmd=["python3","/srv/cfk/proxies/python/cfk_proxy.py","--preload","hello_http"]
    proxy web add_env=PYTHONPATH=/srv/cfk/proxies/python/examples
    proxy web service web1 cmd=hello_http:main
    proxy web service web1 sockets=http
    proxy web service web2 cmd=hello_http:main
    proxy web service web2 sockets=http
    command start service web1
    command start service web2

TERM stops a worker gracefully: an idle one exits at once (code 0), a busy
one after the request in hand.
"""

import http.server
import os
import signal
import socket

# LISTEN_FDS_START is sd_listen_fds(3)'s first fd.
LISTEN_FDS_START = 3

# The pid that imported this module: the proxy's.
LOADED_BY = os.getpid()

# Application state, built once in the proxy and shared by the workers.
PAGES = {"/": b"hello from worker %d, preloaded by %d\n"}


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: one request a connection, so that no client keeps a worker.
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        page = PAGES.get(self.path)
        if page is None:
            self.send_error(404)
            return
        body = page % (os.getpid(), LOADED_BY)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # stderr lines are ERROR lines in cfkd's log


class Server(http.server.HTTPServer):
    """Server is an HTTPServer on a socket it did not bind."""

    def __init__(self, sock):
        super().__init__(("", 0), Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.busy = False

    def process_request(self, request, client_address):
        self.busy = True
        try:
            super().process_request(request, client_address)
        finally:
            self.busy = False


def listen_socket():
    """listen_socket returns the socket passed as fd 3, after checking that
    it was passed to this process."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        raise SystemExit("hello_http: no socket was passed (give the service sockets=NAME)")
    # The socket's O_NONBLOCK is left as it is: it belongs to the one open
    # socket that every worker on it shares (README, `nonblocking`). Either
    # way works: HTTPServer waits in select, and when another worker took
    # the connection first, a non-blocking accept fails with EAGAIN, which
    # HTTPServer ignores, and a blocking one waits for the next connection.
    return socket.socket(fileno=LISTEN_FDS_START)


def main():
    server = Server(listen_socket())
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        if not server.busy:
            raise SystemExit(0)
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    while not stopping:
        server.handle_request()
    return 0

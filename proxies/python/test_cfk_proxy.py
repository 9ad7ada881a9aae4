"""Unit tests of cfk_proxy's pure parts; the Go tests (proxy_test.go) run
the whole proxy. Run with: python3 -m unittest test_cfk_proxy"""

import os
import unittest
from unittest import mock

import cfk_proxy
from cfk_proxy import Outbox, Plan, needs_shell, split_lines, truthy


class PlanTest(unittest.TestCase):
    def test_kinds(self):
        cases = [
            ("app:main", "call", ["app:main"]),
            ("pkg.mod:obj.run", "call", ["pkg.mod:obj.run"]),
            (["app:main", "x"], "call", ["app:main", "x"]),
            ("  /srv/w.py a b ", "run", ["/srv/w.py", "a", "b"]),
            (["w.py"], "run", ["w.py"]),
            ("/bin/worker -v", "exec", ["/bin/worker", "-v"]),
            ("echo $HOME", "exec", ["/bin/sh", "-c", "echo $HOME"]),
            ("FOO=1 prog", "exec", ["/bin/sh", "-c", "FOO=1 prog"]),
            ("exec prog", "exec", ["/bin/sh", "-c", "exec prog"]),
            ("w.py > log", "exec", ["/bin/sh", "-c", "w.py > log"]),
            (["echo", "$HOME"], "exec", ["echo", "$HOME"]),
            ("app:", "exec", ["app:"]),
            ("1app:main", "exec", ["1app:main"]),
        ]
        for cmd, kind, argv in cases:
            with self.subTest(cmd=cmd):
                p = Plan.parse(cmd)
                self.assertEqual((p.kind, p.argv), (kind, argv))

    def test_bad(self):
        for cmd in (None, "", "   ", [], [""], ["a", 1], 3, {"a": 1}):
            with self.subTest(cmd=cmd):
                self.assertRaises(ValueError, Plan.parse, cmd)

    def test_comm(self):
        self.assertEqual(Plan.parse("app:main").comm("w1"), "[cfk w1] app:main")
        self.assertEqual(Plan.parse("/usr/bin/prog").comm("w1"), "[cfk w1] prog")


class HelpersTest(unittest.TestCase):
    def test_needs_shell(self):
        self.assertFalse(needs_shell("prog -a b"))
        self.assertFalse(needs_shell("app:main"))
        for s in ("a|b", "a;b", "a`b`", ". x", "A=1 b", "a\nb", "a'b", "~/x"):
            self.assertTrue(needs_shell(s), s)

    def test_truthy(self):
        for v in (0, "", "0", None, False):
            self.assertFalse(truthy(v), v)
        for v in (1, "1", True, "yes"):
            self.assertTrue(truthy(v), v)

    def test_exit_code(self):
        self.assertEqual(cfk_proxy.exit_code(None), 0)
        self.assertEqual(cfk_proxy.exit_code(3), 3)
        self.assertEqual(cfk_proxy.exit_code(True), 1)
        self.assertEqual(cfk_proxy.exit_code(256 + 2), 2)
        with mock.patch("sys.stderr"):
            self.assertEqual(cfk_proxy.exit_code("reason"), 1)

    def test_clip(self):
        self.assertEqual(cfk_proxy.clip("a\nb\x7f"), "a?b?")
        self.assertEqual(cfk_proxy.clip(b"\xff"), "\ufffd")
        self.assertEqual(cfk_proxy.clip(None), "null")
        self.assertEqual(len(cfk_proxy.clip("x" * 500)), cfk_proxy.MAX_QUOTED + 3)

    def test_sockets_from_environ(self):
        env = {"_CFK_SOCK_web": "6", "_CFK_SOCK_a-b": "7", "_CFK_SOCK_": "8", "_CFK_SOCK_bad": "x", "X": "1"}
        self.assertEqual(cfk_proxy.sockets_from_environ(env), {"web": 6, "a-b": 7})


class SplitLinesTest(unittest.TestCase):
    def test_lines(self):
        self.assertEqual(split_lines(b"", b"a\nb\r\n\nc", 10), ([b"a", b"b", b""], b"c"))
        self.assertEqual(split_lines(b"c", b"d\n", 10), ([b"cd"], b""))

    def test_long(self):
        lines, rest = split_lines(b"", b"x" * 25 + b"\n" + b"y" * 12, 10)
        self.assertEqual(lines, [b"x" * 10, b"x" * 10, b"x" * 5, b"y" * 10])
        self.assertEqual(rest, b"yy")
        lines, rest = split_lines(b"y" * 9, b"y", 10)
        self.assertEqual((lines, rest), ([b"y" * 10], b""))


class OutboxTest(unittest.TestCase):
    def setUp(self):
        self.r, self.w = os.pipe2(os.O_NONBLOCK)

    def tearDown(self):
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass

    def read_all(self):
        out = b""
        while True:
            try:
                b = os.read(self.r, 1 << 16)
            except BlockingIOError:
                return out
            if not b:
                return out
            out += b

    def test_bounded_drops_and_counts(self):
        box = Outbox(self.w, limit=100)
        self.assertTrue(box.put(b"a" * 60 + b"\n"))
        self.assertFalse(box.put(b"b" * 60 + b"\n"))
        self.assertFalse(box.put(b"c" * 60 + b"\n"))
        box.flush()
        self.assertEqual(self.read_all(), b"a" * 60 + b"\n" + b"err:-:2 log lines dropped: cfkd was not reading them\n")
        self.assertFalse(box.pending)

    def test_full_pipe_keeps_everything(self):
        box = Outbox(self.w)
        chunk = b"s" * 1000 + b"\n"
        for _ in range(200):  # more than a pipe holds
            self.assertTrue(box.put(chunk))
        box.flush()
        self.assertTrue(box.pending)
        got = self.read_all()
        while box.pending:
            box.flush()
            got += self.read_all()
        self.assertEqual(got, chunk * 200)

    def test_broken(self):
        box = Outbox(self.w)
        os.close(self.r)
        box.put(b"x\n")
        box.flush()
        self.assertTrue(box.broken)
        self.assertFalse(box.pending)
        self.assertFalse(box.put(b"y\n"))


class EarlyExitTest(unittest.TestCase):
    """An exit reaped before its start was recorded is reported after it."""

    def test_early_exit_reported_after_started(self):
        """An exit reaped before the fork is not taken for the new worker's,
        should the kernel reuse the pid."""
        fds = [os.pipe() for _ in range(3)]
        try:
            p = cfk_proxy.Proxy(fds[0][0], fds[1][1], fds[2][1], {}, 1.0)
            p.early_exits[999998] = 0  # reaped before the fork: forgotten

            def fork_and_reap():
                # As if the worker died and was reaped before spawn recorded it.
                p.early_exits[999999] = 768
                return 999999

            req = cfk_proxy.StartRequest({"name": "w", "cmd": "app:main", "ignore_stdout": 1, "ignore_stderr": 1}, {})
            with mock.patch("os.fork", side_effect=fork_and_reap):
                p.spawn(req)
            self.assertEqual(bytes(p.status.buf),
                             b'{"status":"started","name":"w","pid":999999}\n'
                             b'{"status":"stopped","name":"w","pid":999999,"exit_status":768}\n')
            self.assertEqual(p.workers, {})
            self.assertEqual(p.early_exits, {})
        finally:
            for r, w in fds:
                os.close(r)
                os.close(w)


class StartRequestTest(unittest.TestCase):
    def test_fields(self):
        req = cfk_proxy.StartRequest({
            "name": "w", "cmd": ["app:main"], "env": {"A": "1", "N": 2}, "tie_stdin_to": "fcgi",
            "ignore_stdout": "0", "ignore_stderr": 1, "no_new_session": None, "sockets": ["web", "fcgi"],
        }, {"fcgi": 6, "web": 7})
        self.assertIsNone(req.problem)
        self.assertEqual(req.env, {"A": "1", "N": "2"})
        self.assertEqual((req.stdin_fd, req.socket_fds, req.socket_names), (6, [7, 6], ["web", "fcgi"]))
        self.assertEqual((req.ignore_stdout, req.ignore_stderr, req.no_new_session), (False, True, False))

    def test_problems(self):
        for msg, want in [
            ({"cmd": "x", "env": {"A=B": "1"}}, "invalid environment variable name"),
            ({"cmd": "x", "env": {"A": None}}, "no string value"),
            ({"cmd": "x", "env": []}, "env must be an object"),
            ({"cmd": "x", "sockets": "web"}, "sockets must be a list"),
            ({"cmd": "x", "sockets": ["nope"]}, "unknown socket 'nope'"),
            ({"cmd": "x", "tie_stdin_to": "nope"}, "unknown socket 'nope'"),
        ]:
            with self.subTest(msg=msg):
                req = cfk_proxy.StartRequest(dict(msg, name="w"), {"web": 6})
                self.assertIn(want, req.problem or "")


if __name__ == "__main__":
    unittest.main()

// Package listener owns cfkd's listening sockets: it declares them
// (Spec, the `socket NAME attr=value` attributes of SPEC 1.3), binds them
// or adopts them from systemd, and reports their accept queues.
//
// # Why cfkd listens and the workers accept
//
// ControlFreak binds a socket once, in the supervisor, and hands the same
// listening fd to every worker that serves it (as stdin, FastCGI style, or
// as fd 3, 4, ... with LISTEN_FDS, systemd style). The kernel then balances
// connections between the workers, a worker can die or be restarted without
// the port ever closing, a pool can grow or shrink with no client seeing a
// refused connection, and the workers need no privilege to listen on port
// 80. cfkd itself never accepts: it only holds the fd, so that the socket
// outlives every worker.
//
// # Files
//
//   - spec.go: the attribute table and the address parser.
//   - bind.go: socket(2), bind(2), listen(2), and the Socket type.
//   - fds.go: the fd tricks shared by Bind and Adopt.
//   - adopt.go: adopting inherited fds, and the systemd socket activation
//     protocol in both directions (Inherited into cfkd, ListenEnv for
//     the children).
//   - diag.go: accept-queue depth and limit from netlink sock_diag.
//
// # The fd tricks, one sentence each
//
//   - Every socket is created with SOCK_CLOEXEC, and every adopted fd gets
//     FD_CLOEXEC at once, so a child gets only the fds placed for it and a
//     fork in another goroutine cannot leak one.
//   - O_NONBLOCK belongs to the open file description that cfkd and all the
//     workers share, so cfkd sets it once, as the socket's attribute says,
//     and never changes it behind the workers' backs.
//   - Bind wraps the fd in an *os.File while it is still blocking and only
//     then sets O_NONBLOCK, because os.NewFile puts a non-blocking fd in
//     Go's poller, which would wake cfkd for every connection meant for the
//     workers.
//   - Adopt keeps its own dup of the fd and closes the caller's file,
//     because File.Fd on a file made by package net puts the socket into
//     blocking mode, and that would change it for every worker.
//   - An adopted fd that is already non-blocking, and is declared so,
//     is wrapped as it is and therefore sits in Go's poller: clearing
//     O_NONBLOCK for a moment to avoid that could block a worker that is
//     accepting on it right now, and correctness beats a wakeup.
//   - Never wrap a Socket's fd in net.FileListener inside cfkd: that sets
//     O_NONBLOCK on the shared description.
//   - A unix socket gets its Mode with fchmod before bind(2), so the path
//     appears no more open than asked (the kernel applies the umask on top),
//     then chown and chmod through an O_PATH handle on that very inode set
//     the exact owner and mode, and only then listen(2) lets clients in.
//   - A stale unix path is one whose connect(2) is refused; it is removed,
//     while a live socket, a symlink or any other file at the path is left
//     alone and the bind fails with "address already in use".
//   - Close removes the unix path only if it is still the inode Bind
//     created, so it never deletes a socket another process put there since.
//   - The accept queue is found by the socket's inode (fstat of the fd),
//     which is what sock_diag reports as idiag_inode / udiag_ino.
//
// # Addresses
//
// host is an IPv4 or IPv6 address (brackets optional for IPv6, a zone
// allowed: "[fe80::1%eth0]"), "localhost" (always 127.0.0.1, never
// resolved), or "unix/". It defaults to 127.0.0.1 for TCP: a socket nobody
// asked to expose stays on loopback. A service that is an absolute path
// means a unix socket even without host=unix/. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is bound as plain IPv4, as the original did. IPv6
// sockets are IPV6_V6ONLY, so "::" and "0.0.0.0" on one port are two
// sockets that can both be declared, as with nginx.
//
// # Decisions
//
//   - sock_diag is spoken directly (diag.go, with golang.org/x/sys/unix)
//     rather than through github.com/vishvananda/netlink: the library's
//     SocketDiagTCPInfo and UnixSocketDiagInfo dump every socket in every
//     state, every connection of a busy web host included, while cfkd needs
//     the listening TCP sockets only (an idiag_states filter) or one unix
//     socket (unix_diag's lookup by inode, no dump at all).
//   - listen_qsize=max and an unset listen_qsize are the same thing, the
//     kernel's maximum, so both are stored as 0 and somaxconn is read when
//     the socket is bound.
//   - Set checks each value on its own (a host must parse, a service name
//     must be in /etc/services, an owner must exist) so that a typo is an
//     immediate `invalid value`; whether host and service agree is known
//     only when both are set, and is Bind's error.
//   - The fds Inherited returns are InheritedFile values: a Go package
//     cannot hold both a func and a type named Inherited.
//   - A TCP listener that Go's net package made is MPTCP when the kernel
//     has it; Adopt takes it as TCP and Queue asks mptcp_diag for it.
//
// # systemd socket activation
//
// Inherited reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES as
// sd_listen_fds_with_names(3) does and always unsets them, so they never
// reach a service; ListenEnv writes them for a child. Both follow
// sd_listen_fds(3): fds start at SD_LISTEN_FDS_START (3), names are joined
// by ':', a name-less activation names every fd "unknown". Note that
// systemd gives every fd of one .socket unit the same name.
package listener

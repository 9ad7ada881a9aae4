// Package console is cfkd's management console: the language operators
// speak to cfkd, the management socket that carries it, and the loader of
// config files.
//
// # One language
//
// ControlFreak's best idea is that the console takes the same language as
// the config file: loading a file is typing its lines into the console.
// So there is one parser, Parse, used by Load for files and by Server for
// the socket; it turns a line into a typed Request and never acts on it.
// A Handler (the supervisor) carries requests out and judges attribute
// names, verbs and values. The grammar is SPEC 1.3:
//
//	service NAME ATTR=VALUE
//	socket NAME ATTR=VALUE
//	proxy NAME ATTR=VALUE
//	proxy NAME service SVC ATTR=VALUE
//	command VERB [ARGS...]
//
// Spaces may surround `=`. A value loses its leading whitespace; a value
// starting with `"` or `'` is what lies between that quote and the last
// one of the same kind; anything else, a JSON array included, is kept as
// written. An empty value unsets the attribute.
//
// # Comments
//
// A `#` that begins a word (at the start of a line or after whitespace)
// starts a comment running to the end of the line, unless it is inside
// quotes. A quote counts where a quoted word can start: at the start of the
// line, after whitespace, or right after `=`, `[` or `,`; it runs to the
// next quote of its kind, a backslash escaping inside double quotes; an
// unclosed quote is an ordinary character. The original cut the line at
// any `#`, which broke values such as `cmd=curl http://x/#top` or
// `cmd=sh -c 'a # b'`; lines whose comments start after whitespace, the
// usual style, mean what they meant.
//
// # Framing
//
// The socket is line oriented and keeps the original's bytes exactly. A
// request is one line ending in "\n" (a "\r" before it is dropped). The
// answer is zero or more body lines, each ending in "\n", then `OK\r\n`;
// or a single `ERROR: <reason>\r\n`. Only final lines end in "\r\n", so
// body lines and error reasons never hold a "\r" or "\n": the server turns
// them into spaces. Lines are answered in order and may be pipelined. The
// line `exit` (any case) closes the connection without an answer; an
// empty or comment-only line is answered `ERROR: command is void`.
//
// Bad input never hurts the daemon. A line longer than the limit (64 KiB)
// is answered `ERROR: line too long (limit 65536 bytes)` and skipped to its
// end without being held in memory; a client that does not read its
// answers is dropped when one cannot be written within the write timeout;
// a panic in the Handler is answered `ERROR: internal error: ...`. A last
// line without "\n" when the client hangs up is dropped, not executed (as
// in the original): it may be a command cut short. Config files, where a
// missing final newline is common, execute it.
//
// On a unix socket, which is created mode 0600, only root and cfkd's own
// user may talk (checked with SO_PEERCRED); others get
// `ERROR: permission denied`. TCP has no such check, so a Server with a
// Token wants `auth TOKEN` as a TCP client's first line (token.go keeps
// the token file's rules, which cfkd and cfkctl share).
package console

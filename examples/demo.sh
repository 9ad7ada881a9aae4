#!/usr/bin/env bash
# Runs the demo: cfkd in the foreground of this terminal with four workers
# sharing 127.0.0.1:8080. Ctrl-C stops cfkd and every worker.
set -euo pipefail
BIN=${1:-$(pwd)/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
go build -o "$BIN/worker" "$HERE/worker"

HOME_DIR=$(mktemp -d /tmp/cfkd-demo.XXXXXX)
ADDR="unix:$HOME_DIR/sock"
ctl() { "$BIN/cfkctl" -a "$ADDR" "$@"; }

"$BIN/cfkd" --home "$HOME_DIR" &
CFKD=$!
trap 'kill -TERM $CFKD 2>/dev/null; wait $CFKD 2>/dev/null; rm -rf "$HOME_DIR"' EXIT
trap 'exit 0' INT TERM

for _ in $(seq 100); do [ -S "$HOME_DIR/sock" ] && break; sleep 0.05; done
ctl load --basedir "$BIN" "$HERE/demo.conf"
sleep 1.2
echo "== cfkctl status"
ctl status
echo "== cfkctl sockets"
ctl sockets || true
echo "== eight requests to http://127.0.0.1:8080/"
for _ in $(seq 8); do
	if command -v curl >/dev/null; then curl -s http://127.0.0.1:8080/; else
		python3 -c 'import urllib.request;print(urllib.request.urlopen("http://127.0.0.1:8080/").read().decode(),end="")'; fi
done
echo
echo "cfkd is running with home $HOME_DIR. Try, in another terminal:"
echo "  $BIN/cfkctl -a $ADDR status"
echo "  kill -9 \$($BIN/cfkctl -a $ADDR pid web1)   # it comes back"
echo "  $BIN/cfkctl -a $ADDR restart @web"
echo "Ctrl-C stops everything."
wait $CFKD

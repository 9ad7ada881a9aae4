"""memapp: the application the memory benchmark (bench-mem.sh) loads, in
the proxy (--preload memapp), in each independent python3, or in
gunicorn's master (--preload).

BENCH_DATA=objects: a dict of BENCH_MB*5000 entries {"key-NNNNNNNN": [int]}
  (for 200 MB: 1M str keys, 1M one-item lists and 1M ints, 3M small
  objects). Lists, because the collector keeps tracking them: a tuple of
  ints is untracked by the first collection that sees it, and would hide
  what a collection in a worker costs.
BENCH_DATA=blob: one bytes object of BENCH_MB MiB.

BENCH_UNFREEZE=1 in a worker's env: the worker calls gc.unfreeze() first.

A worker marks each step with an empty file BENCH_MARKERS/STEP.PID: ready
once it runs; gc after gc.collect() (on GC_SIGNAL); read after it has read
all the data once (on READ_SIGNAL). Real-time signals, so that they collide
with nothing gunicorn uses.
"""

import gc
import os
import signal

KIND = os.environ.get("BENCH_DATA", "objects")
MB = int(os.environ.get("BENCH_MB", "200"))
MARKERS = os.environ.get("BENCH_MARKERS", ".")

GC_SIGNAL = signal.SIGRTMIN + 1
READ_SIGNAL = signal.SIGRTMIN + 2

# ENTRIES_PER_MB is what makes the dict about BENCH_MB MiB (measured).
ENTRIES_PER_MB = 5000


def load():
    if KIND == "objects":
        return {"key-%08d" % i: [i * 7] for i in range(MB * ENTRIES_PER_MB)}
    if KIND == "blob":
        return b"0123456789abcdef" * ((MB << 20) >> 4)
    raise SystemExit("memapp: BENCH_DATA must be objects or blob, not %r" % KIND)


DATA = load()


def read_all():
    """read_all reads every byte of the data once, as a request might."""
    if isinstance(DATA, dict):
        total = 0
        for key, value in DATA.items():
            total += len(key) + value[0]
        return total
    return DATA.count(b"\0")


def mark(step):
    open(os.path.join(MARKERS, "%s.%d" % (step, os.getpid())), "w").close()


def on_gc(signum, frame):
    gc.collect()
    mark("gc")


def on_read(signum, frame):
    read_all()
    mark("read")


def install():
    signal.signal(GC_SIGNAL, on_gc)
    signal.signal(READ_SIGNAL, on_read)


def worker():
    """worker is the service: cmd=memapp:worker under the proxy, or
    python3 -c 'import memapp; memapp.worker()' on its own."""
    if os.environ.get("BENCH_UNFREEZE"):
        # Undo the proxy's gc.freeze in this worker only, to measure what
        # it saves: the frozen objects go back to the oldest generation.
        gc.unfreeze()
    install()
    mark("ready")
    while True:
        signal.pause()


def application(environ, start_response):
    """application is the WSGI app gunicorn serves (never called here)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d entries\n" % len(DATA)]

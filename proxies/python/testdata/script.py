"""A script the proxy runs with runpy, inside the preloaded interpreter."""

import os
import sys

import cfktestapp

print("script", __name__, " ".join(sys.argv[1:]), "loaded-by", cfktestapp.LOADED_BY,
      "pid", os.getpid(), "path0", sys.path[0], flush=True)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)

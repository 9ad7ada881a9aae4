"""gunicorn config for bench-mem.sh: each worker installs memapp's signal
handlers and marks itself ready once gunicorn has set up its own."""


def post_worker_init(worker):
    import memapp
    memapp.install()
    memapp.mark("ready")

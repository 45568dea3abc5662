"""gunicorn's settings file (read from the working directory): hands the app the number of workers gunicorn runs."""

import os


def on_starting(server):
    # With several workers the app refuses Socket.IO long-polling (bsn/__init__.py), so it must know gunicorn's
    # real count, whatever gave the -w (the Procfile's WEB_WORKERS, or a hand-typed command), before any fork.
    workers = server.cfg.workers
    if workers < 1:
        raise RuntimeError(f"the web process needs at least 1 worker, got -w {workers}")
    os.environ["WEB_WORKERS"] = str(workers)

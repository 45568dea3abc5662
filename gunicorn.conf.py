"""gunicorn's settings file (read from the working directory): the web dyno's worker count, handed on to the app."""

import os

# WEB_WORKERS and not gunicorn's own WEB_CONCURRENCY, which Heroku's Python buildpack sets by itself: more than
# one worker turns Socket.IO long-polling off (bsn/__init__.py), so it must be asked for. A -w wins over this.
workers = int(os.environ.get("WEB_WORKERS") or 1)


def on_starting(server):
    # The app learns gunicorn's real count, whatever gave it (this file or a -w), before any worker forks.
    count = server.cfg.workers
    if count < 1:
        raise RuntimeError(f"the web process needs at least 1 worker, got -w {count}")
    os.environ["WEB_WORKERS"] = str(count)

"""Entry point of the web process: gevent's monkey-patching must come before any other import."""

from gevent import monkey

monkey.patch_all()

from bsn import create_app  # noqa: E402

app = create_app()

"""Entry point of the web process: gevent's monkey-patching must come before any other import."""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402

from bsn import create_app  # noqa: E402

app = create_app()

# What start-up made (modules, the app, schemas, SQLAlchemy's tables: about 170,000 objects) lives as
# long as the process. Frozen out of the cyclic collector, a full collection scans only what requests
# made since; unfrozen, each one stalled every greenlet for 100 ms or more (a chat message's p99).
gc.collect()
gc.freeze()
# A young collection every WEB_GC_THRESHOLD net allocations of tracked objects instead of Python's 700: most of a
# chat send's objects die before it, so fewer survive into the older generations, whose collections stall every
# greenlet for milliseconds. Chat benchmark, default scenario: p99 7.0 and 4.9 ms against 8.1 and 6.0 at 700.
gc.set_threshold(app.config["WEB_GC_THRESHOLD"], *gc.get_threshold()[1:])

"""The local run command: migrations, a private Redis if none is configured, then the Procfile's dynos via honcho."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from bsn.devredis import PrivateRedis, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_REDIS_PORT = 6390


def _terminate(signum, frame):
    # SIGTERM (a supervisor, `timeout`, a closed terminal) stops everything the way Ctrl-C does.
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    env = dict(os.environ)
    instance = env.setdefault("BSN_INSTANCE_PATH", os.path.join(ROOT, "instance"))
    os.makedirs(instance, exist_ok=True)
    env.setdefault("PORT", "5000")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")

    redis_server = None
    if not env.get("REDIS_URL"):
        redis_server = PrivateRedis(os.path.join(instance, "redis"), port=_dev_port())
        redis_server.start()
        env["REDIS_URL"] = redis_server.url
        print(f"bsn: private Redis at {redis_server.url} (data in {redis_server.directory})", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "flask", "--app", "bsn", "db", "upgrade"], cwd=ROOT, env=env, check=True)
        dynos = argv or ["web", "worker", "scheduler"]
        print(
            f"bsn: starting {', '.join(dynos)}; web on http://127.0.0.1:{env['PORT']}  (Ctrl-C stops all)", flush=True
        )
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", os.path.join(ROOT, "Procfile"), "start", *dynos], cwd=ROOT, env=env
        )
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            honcho.send_signal(signal.SIGINT)
            return honcho.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if redis_server is not None:
            redis_server.stop()


def _dev_port() -> int:
    """6390 unless something already listens there (another checkout's Redis, say)."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", DEV_REDIS_PORT)) != 0:
            return DEV_REDIS_PORT
    return free_port()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Starts BSN for the shared chat benchmark: fresh database, migrate, seed users, tokens and rooms, exec gunicorn.

Run by the harness (bench/chat/servers.json) or by bench/chat/idle.mjs, from the repository root, with the
environment of the servers file (PORT, REDIS_URL, BSN_ENV, limits). Steps:

1. Work out the harness's room layout (rooms x clients per room): BSN_BENCH_ROOMS and
   BSN_BENCH_CLIENTS_PER_ROOM if set, else the command line of the harness's orchestrator (our parent process)
   read against its scenarios.json, so `./run.sh --heavy --clients 5` seeds the matching layout by itself.
2. Make a throwaway directory with a SQLite database (or use BSN_BENCH_DATABASE_URL: an empty database), and
   start a reaper in a session of its own that deletes the directory once the web process is gone.
3. `flask db upgrade`, then seed directly (no argon2, no HTTP): user i+1 and the token "bsn-chat-bench-<i>" for
   the load generator's client i, and one group conversation per room whose id is the room index (the load
   generator's `{room_index}`), with that room's clients as members. An authList file is written beside the
   database (one {"token"} per client, in client order) for manual loadgen runs (`--auth-list FILE`).
4. exec the Procfile's `web` command (gunicorn, WEB_WORKERS gevent workers: one, or two for `bsn-2w`) bound to
   127.0.0.1:$PORT, so the process the harness measures (its process group) is gunicorn's master and workers only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import migrate, procfile_web_command  # noqa: E402

TOKEN = "bsn-chat-bench-{}"  # must match the `auth` template in servers.json and idle.mjs
# The launcher and its web process never live longer than this, whatever happens to the harness.
MAX_LIFETIME = int(os.environ.get("BSN_BENCH_MAX_SECONDS", "3600"))
# Never verified: nobody logs in with a password, and a real argon2 hash per user would cost minutes.
DUMMY_HASH = "!bench-seeded-no-password"


def say(text: str) -> None:
    print(f"[bsn-bench] {text}", flush=True)


# -- 1. the layout ------------------------------------------------------------------------------------------------


def harness_layout(pid: int) -> tuple[int, int] | None:
    """Rooms and clients per room of the orchestrator `pid` (node .../orchestrator/bench.js ARGS), or None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    script = next((a for a in argv if a.endswith("orchestrator/bench.js")), None)
    if script is None:
        return None
    args = argv[argv.index(script) + 1 :]
    scenarios = json.loads((Path(cwd, script).resolve().parents[1] / "scenarios.json").read_text())
    # The same flags, with the same meaning, as the orchestrator's parseArgs.
    name, overrides = "default", {}
    flags = {"--rooms": "rooms", "--clients": "clientsPerRoom"}
    for k, arg in enumerate(args):
        if arg == "--heavy":
            name = "heavy"
        elif arg == "--scenario" and k + 1 < len(args):
            name = args[k + 1]
        elif arg in flags and k + 1 < len(args):
            overrides[flags[arg]] = int(args[k + 1])
    scenario = {**scenarios[name], **overrides}
    return int(scenario["rooms"]), int(scenario["clientsPerRoom"])


def layout() -> tuple[int, int]:
    rooms, per_room = os.environ.get("BSN_BENCH_ROOMS"), os.environ.get("BSN_BENCH_CLIENTS_PER_ROOM")
    if rooms and per_room:
        return int(rooms), int(per_room)
    found = harness_layout(os.getppid())
    if found is None:
        raise SystemExit(
            "serve.py: set BSN_BENCH_ROOMS and BSN_BENCH_CLIENTS_PER_ROOM, or run it from the chat harness"
        )
    return found


# -- 2. the throwaway directory and its reaper --------------------------------------------------------------------


def reap(pid: int, workdir: str, deadline: float) -> None:
    """Wait for `pid` (the web process) to end, or end it at `deadline`; report stored messages; delete workdir."""
    with contextlib.suppress(Exception):
        # Stay alive when the harness signals the server's process group: we are in a session of our own,
        # but a terminal's Ctrl-C may still reach us; the directory must go in every case.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    alive = True
    while alive and time.time() < deadline:
        time.sleep(0.25)
        alive = pid_alive(pid)
    if alive:
        say(f"web process {pid} outlived BSN_BENCH_MAX_SECONDS: stopping it")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            for _ in range(40):
                if not pid_alive(pid):
                    break
                time.sleep(0.25)
    database = Path(workdir, "bench.sqlite3")
    if database.exists():
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(database, timeout=10)) as conn:
            # Proof that storage was on: run.sh compares this with the load generator's count of sent messages.
            stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            say(f"stored messages: {stored}")
    shutil.rmtree(workdir, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (the harness has not collected it yet) is gone for our purpose.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return False


def start_reaper(workdir: str) -> None:
    subprocess.Popen(
        [sys.executable, __file__, "--reap", str(os.getpid()), workdir, str(time.time() + MAX_LIFETIME)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outside the measured (and signalled) process group
    )


# -- 3. migrate and seed ------------------------------------------------------------------------------------------


def seed(rooms: int, per_room: int, authlist: Path) -> None:
    """Users, tokens, conversations and members, by bulk inserts inside the app context (the environment's DB)."""
    from sqlalchemy import insert

    from bsn import create_app
    from bsn.clock import now
    from bsn.extensions import db
    from bsn.models import AuthToken, Conversation, ConversationMember, User
    from bsn.services import accounts

    clients = rooms * per_room
    app = create_app()
    with app.app_context():
        at = now()
        expires = at + timedelta(seconds=app.config["AUTH_TOKEN_TTL"])
        tokens = [TOKEN.format(i) for i in range(clients)]
        db.session.execute(
            insert(User.__table__),
            [
                {"id": i + 1, "username": f"chat{i:06d}", "email": f"chat{i:06d}@example.com",
                 "password_hash": DUMMY_HASH, "display_name": f"Chat {i}", "bio": "", "role": "user",
                 "created_at": at}
                for i in range(clients)
            ],
        )  # fmt: skip
        db.session.execute(
            insert(AuthToken.__table__),
            [
                # Stored as accounts.issue_token stores it: the SHA-256 of the raw token only.
                {"user_id": i + 1, "token_hash": hashlib.sha256(raw.encode()).hexdigest(), "created_at": at,
                 "expires_at": expires}
                for i, raw in enumerate(tokens)
            ],
        )  # fmt: skip
        # The load generator puts client i in room i // per_room and sends {room_index} as conversation_id.
        db.session.execute(
            insert(Conversation.__table__),
            [
                {"id": r, "kind": "group", "title": f"bench room {r}", "created_by": r * per_room + 1, "last_seq": 0,
                 "created_at": at}
                for r in range(rooms)
            ],
        )  # fmt: skip
        db.session.execute(
            insert(ConversationMember.__table__),
            [
                {"conversation_id": i // per_room, "user_id": i + 1, "role": "admin" if i % per_room == 0 else "member",
                 "last_read_seq": 0, "joined_at": at}
                for i in range(clients)
            ],
        )  # fmt: skip
        db.session.commit()
        # Through the service's own check, so a change in how tokens are stored fails here and not as 1,000
        # refused connections.
        last = clients - 1
        for i in (0, last):
            if accounts.user_id_for_token(tokens[i]) != i + 1:
                raise SystemExit(f"serve.py: seeded token of client {i} does not authenticate")
    authlist.write_text(json.dumps([{"token": t} for t in tokens]))


# -- 4. the web process -------------------------------------------------------------------------------------------


def web_command(port: str, clients: int) -> list[str]:
    """The Procfile's `web` command, bound to loopback, with room for every client (and some HTTP) per worker."""
    # The servers file names the count: `bsn` one worker, `bsn-2w` two.
    argv = procfile_web_command(int(port), int(os.environ.get("WEB_WORKERS") or 1))
    needed = clients + 200
    if "--worker-connections" in argv:
        k = argv.index("--worker-connections") + 1
        argv[k] = str(max(int(argv[k]), needed))
    else:
        argv += ["--worker-connections", str(max(1000, needed))]
    return argv


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--reap":
        reap(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return
    port = os.environ.get("PORT")
    if not port:
        raise SystemExit("serve.py: PORT is not set")
    rooms, per_room = layout()
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="bsn-chat-bench-")
    start_reaper(workdir)
    env = dict(os.environ)
    # Whatever DATABASE_URL the caller's shell had: the benchmark must never seed into a real database.
    env["DATABASE_URL"] = os.environ.get("BSN_BENCH_DATABASE_URL") or f"sqlite:///{workdir}/bench.sqlite3"
    env["BSN_INSTANCE_PATH"] = workdir
    os.environ.update(env)
    migrate(env)
    authlist = Path(workdir, "authlist.json")
    seed(rooms, per_room, authlist)
    command = web_command(port, rooms * per_room)
    say(
        f"{rooms} rooms x {per_room} clients seeded in {time.monotonic() - t0:.1f} s "
        f"(database and authList in {workdir}); exec {shlex.join([Path(command[0]).name, *command[1:]])}"
    )
    os.chdir(REPO)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()

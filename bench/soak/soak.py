"""Soak benchmark: the whole service (web, worker, scheduler) under steady chat and mining load; memory and latency
per minute, and a verdict on leaks.

Steps: a private Redis and a fresh database (SQLite file or a PostgreSQL database of its own), `flask db upgrade`,
seeding in bulk (miners with live sessions as bench/mining seeds them; chat users and one group conversation per
room of the chat harness's default scenario), then the Procfile's web, worker and scheduler with production
settings, and bench/soak/load.mjs for the duration. A sampler reads the RSS of each process every few seconds.
At the end: messages stored against messages sent, failed RQ jobs, and the report (bench/results/soak/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Run as a script: the repository, not this folder, is where `bench` and `bsn` come from.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import psutil  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bench.common import (  # noqa: E402
    RESULTS,
    Server,
    database,
    exit_on_sigterm,
    git_revision,
    group_rss,
    migrate,
    procfile_web_command,
    save_report,
    shown_command,
)
from bench.mining import seed as mining_seed  # noqa: E402
from bsn.devredis import PrivateRedis, free_port  # noqa: E402

MIB = 1024 * 1024
# The chat harness's "default" scenario, used when its scenarios.json cannot be read.
DEFAULT_CHAT = {"rooms": 20, "clientsPerRoom": 10, "intervalMs": 2000, "payloadBytes": 64}
OTHER_BENCHMARKS = ("loadgen.js", "bench/mining", "bench/auth", "bench/chat", "bench/rest", "wrk ")


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=env_number("SOAK_MINUTES", 20))
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default=os.environ.get("SOAK_DB", "sqlite"))
    parser.add_argument("--miners", type=int, default=int(env_number("SOAK_MINERS", 1000)))
    parser.add_argument("--heartbeat-seconds", type=float, default=env_number("SOAK_HEARTBEAT_SECONDS", 30))
    parser.add_argument("--sample-seconds", type=float, default=env_number("SOAK_SAMPLE_SECONDS", 5))
    parser.add_argument("--max-slope", type=float, default=env_number("SOAK_MAX_SLOPE", 0.5), help="MiB/min")
    # Lighter or heavier chat than the harness's default, to find where the service stops keeping up.
    parser.add_argument("--rooms", type=int)
    parser.add_argument("--clients-per-room", type=int)
    parser.add_argument("--interval-ms", type=int)
    args = parser.parse_args()
    if args.minutes <= 0 or args.miners < 2 or args.heartbeat_seconds <= 0:
        parser.error("--minutes must be > 0, --miners at least 2, --heartbeat-seconds > 0")
    return args


def chat_scenario(args: argparse.Namespace) -> tuple[dict, str]:
    """The harness's default chat scenario (rooms, clients per room, interval, payload) and where it came from."""
    candidates = [os.environ.get("CHAT_BENCH"), str(REPO.parent / "shared/bench/chat"), "/work/shared/bench/chat"]
    scenario, source = dict(DEFAULT_CHAT), "built-in copy of the harness's default"
    for folder in filter(None, candidates):
        path = Path(folder, "scenarios.json")
        with contextlib.suppress(OSError, ValueError, KeyError):
            found = json.loads(path.read_text())["default"]
            scenario, source = {k: found[k] for k in DEFAULT_CHAT}, str(path)
            break
    overrides = {"rooms": args.rooms, "clientsPerRoom": args.clients_per_room, "intervalMs": args.interval_ms}
    changed = {k: v for k, v in overrides.items() if v is not None and v != scenario[k]}
    if changed:
        scenario.update(changed)
        source += ", overridden: " + ", ".join(f"{k} {v}" for k, v in changed.items())
    return scenario, source


# ---- seeding ----


def seed(database_url: str, redis_url: str, miners: int, chat: dict) -> dict:
    """Miners with live sessions, chat users and rooms; returns the load driver's config (tokens, room ids)."""
    from bsn.clock import now
    from bsn.extensions import db
    from bsn.models import Conversation, ConversationMember, User

    app = mining_seed.make_app(database_url, redis_url)
    with app.app_context():
        _, miner_tokens, _ = mining_seed.seed_miners(miners)
        at = now()
        rooms, per_room = chat["rooms"], chat["clientsPerRoom"]
        chat_ids = list(range(miners + 1, miners + 1 + rooms * per_room))
        db.session.execute(insert(User.__table__), [mining_seed.user_row(i, at) for i in chat_ids])
        mining_seed.reset_sequence("users")
        db.session.commit()
        chat_tokens = mining_seed.insert_tokens(chat_ids)
        conversations = []
        for r in range(rooms):
            members = chat_ids[r * per_room : (r + 1) * per_room]
            conversation = Conversation(kind="group", title=f"soak room {r}", created_by=members[0], last_seq=0)
            conversations.append((conversation, members))
        db.session.add_all([c for c, _ in conversations])
        db.session.flush()
        db.session.execute(
            insert(ConversationMember.__table__),
            [
                {"conversation_id": c.id, "user_id": uid, "role": "admin" if k == 0 else "member", "last_read_seq": 0,
                 "joined_at": at}
                for c, members in conversations for k, uid in enumerate(members)
            ],
        )  # fmt: skip
        room_config = [
            {"id": c.id, "tokens": chat_tokens[r * per_room : (r + 1) * per_room]}
            for r, (c, _) in enumerate(conversations)
        ]
        db.session.commit()
        mining_seed.warm_token_cache(chat_tokens)
        db.engine.dispose()
    return {"rooms": room_config, "miner_tokens": miner_tokens}


def stored_messages(database_url: str, redis_url: str) -> int:
    from bsn.extensions import db
    from bsn.models import Message

    app = mining_seed.make_app(database_url, redis_url)
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Message))
        db.engine.dispose()
    return count


def failed_jobs(redis_url: str) -> dict[str, int]:
    import redis
    from rq.registry import FailedJobRegistry

    from workers import queues

    connection = redis.Redis.from_url(redis_url)
    return {name: FailedJobRegistry(name, connection=connection).count for name in queues.ALL}


# ---- the processes ----


def procfile_command(name: str) -> list[str]:
    """The Procfile's `flask ...` line of a dyno, run by this interpreter."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            argv = shlex.split(line.partition(":")[2])
            if argv[0] != "flask":
                raise RuntimeError(f"the {name} dyno is not a flask command: {argv[0]}")
            return [sys.executable, "-m", "flask", *argv[1:]]
    raise RuntimeError(f"Procfile has no {name} line")


class Web(Server):
    """bench.common's gunicorn runner without its peak-RSS thread (four process scans a second): Sampler does it."""

    def _sample(self) -> None:
        return


class Dyno:
    """A worker or scheduler process in a session of its own, its output in a log file."""

    def __init__(self, name: str, env: dict, workdir: str) -> None:
        self.name, self.log_path = name, os.path.join(workdir, f"{name}.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                procfile_command(name), cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip

    def rss(self) -> int:
        """The dyno's own process: RQ's job horses are short-lived forks, counted by nobody here."""
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.process.pid).memory_info().rss
        return 0

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def wait_ready(url: str, processes: dict, timeout: float) -> None:
    """/ready answers 200 once the database and Redis answer and the worker and the scheduler have heart-beaten."""
    deadline = time.monotonic() + timeout
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} before the service was ready")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/ready", timeout=5) as response:
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}/ready did not answer 200 within {timeout:.0f} s")
        time.sleep(0.5)


class Sampler:
    """RSS of web (gunicorn master and worker), worker, scheduler, and Redis's used memory, every few seconds."""

    def __init__(self, web: Server, dynos: dict[str, Dyno], redis_url: str, period: float) -> None:
        import redis

        self.web, self.dynos, self.period = web, dynos, period
        self.redis = redis.Redis.from_url(redis_url)
        self.samples: list[dict] = []
        self.others: set[str] = set()
        self.t0: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            if self.t0 is None:
                continue
            sample = {
                "t": time.monotonic() - self.t0,
                "web": group_rss(self.web.process.pid) / MIB,
                **{name: dyno.rss() / MIB for name, dyno in self.dynos.items()},
                "alive": all(p.poll() is None for p in [self.web.process, *(d.process for d in self.dynos.values())]),
            }
            with contextlib.suppress(Exception):
                sample["redis"] = self.redis.info("memory")["used_memory"] / MIB
            self.samples.append(sample)
            self._notice_other_benchmarks()

    def _notice_other_benchmarks(self) -> None:
        me = os.getpid()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["pid"] != me and "bench/soak" not in cmdline and any(p in cmdline for p in OTHER_BENCHMARKS):
                self.others.add(cmdline[:160])

    def window(self, start: float, end: float) -> list[dict]:
        return [s for s in self.samples if start <= s["t"] < end]


# ---- the verdict ----


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (value per minute) of (seconds, value) points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / var * 60


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(args, chat: dict, chat_source: str, command: list[str], sampler: Sampler, minutes: list[dict],
           summary: dict, stored: int | None, failed: dict[str, int], started: str) -> tuple[str, bool]:  # fmt: skip
    duration = args.minutes * 60
    processes = ["web", "worker", "scheduler"]
    lines = [
        f"# Soak: {args.minutes:g} minutes, {args.db}",
        "",
        f"- revision {git_revision()}, started {started} UTC, host {platform.node()} ({os.cpu_count()} CPUs)",
        f"- chat: {chat['rooms']} rooms x {chat['clientsPerRoom']} clients, one message per client every "
        f"{chat['intervalMs']} ms ({chat['rooms'] * chat['clientsPerRoom'] * 1000 / chat['intervalMs']:.0f} sends/s, "
        f"{chat['rooms'] * chat['clientsPerRoom'] ** 2 * 1000 / chat['intervalMs']:.0f} deliveries/s), "
        f"{chat['payloadBytes']}-byte bodies ({chat_source})",
        f"- mining: {args.miners} miners, one heartbeat each every {args.heartbeat_seconds:g} s "
        f"({args.miners / args.heartbeat_seconds:.0f}/s)",
        f"- web: `{shown_command(command)}`; worker and scheduler as in the Procfile; BSN_ENV=production, "
        "production limits",
        f"- RSS sampled every {args.sample_seconds:g} s: web = gunicorn master + worker; worker and scheduler = "
        "their own process (RQ's job horses are short-lived forks, not counted); redis = used_memory",
        "",
        "| min | web MiB | worker MiB | scheduler MiB | redis MiB | chat sent | delivered/expected | chat p50 ms | "
        "chat p99 ms | heartbeats | hb p50 ms | hb p99 ms | hb errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in minutes:
        window = sampler.window(row["minute"] * 60, (row["minute"] + 1) * 60)
        c, h = row["chat"], row["heartbeat"]
        rss = {name: mean([s.get(name) for s in window]) for name in [*processes, "redis"]}
        lines.append(
            f"| {row['minute'] + 1} | {fmt(rss['web'])} | {fmt(rss['worker'])} | {fmt(rss['scheduler'])} | "
            f"{fmt(rss['redis'])} | {c['sent']} | {c['delivered']}/{c['expected']} | {fmt(c['p50'])} | "
            f"{fmt(c['p99'])} | {h['n']} | {fmt(h['p50'])} | {fmt(h['p99'])} | "
            f"{h['errors'] + h['notMining'] + h['activityErrors']} |"
        )
    checks: list[tuple[str, bool | None, str]] = []
    judged = args.minutes >= 10
    second_half = [s for s in sampler.samples if s["t"] >= duration / 2]
    lines += ["", "| process | first minute MiB | last minute MiB | slope over the second half, MiB/min |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for name in [*processes, "redis"]:
        first = mean([s.get(name) for s in sampler.window(0, 60)])
        last = mean([s.get(name) for s in sampler.window(duration - 60, duration + 1)])
        rate = slope([(s["t"], s[name]) for s in second_half if s.get(name) is not None])
        lines.append(f"| {name} | {fmt(first)} | {fmt(last)} | {fmt(rate, '+.3f')} |")
        if name in processes:
            ok = rate is not None and rate < args.max_slope
            checks.append((f"{name}: no leak (second-half RSS slope under {args.max_slope:g} MiB/min)",
                           ok if judged else None, fmt(rate, "+.3f") + " MiB/min"))  # fmt: skip
    chat_total, hb_total = summary.get("chat", {}), summary.get("heartbeat", {})
    hb_bad = sum(r["heartbeat"]["errors"] + r["heartbeat"]["notMining"] for r in minutes)
    activity_bad = sum(r["heartbeat"]["activityErrors"] for r in minutes)
    alive = all(s["alive"] for s in sampler.samples) and bool(sampler.samples)
    behind = [r["minute"] + 1 for r in minutes if r["chat"]["delivered"] < r["chat"]["expected"]]
    checks += [
        # Under overload the server queues what it cannot serve yet: its memory then grows with the backlog,
        # which is not a leak; this check tells the two apart.
        ("chat keeps up: each minute's deliveries all arrived within 5 s of its end", not behind,
         f"behind in minutes {', '.join(map(str, behind))}" if behind else ""),
        ("every process stayed up", alive, ""),
        ("chat: nothing lost, nothing twice, every send went out",
         chat_total.get("lost") == 0 and chat_total.get("duplicates") == 0 and chat_total.get("sendFailed") == 0,
         f"sent {chat_total.get('sent')}, lost {chat_total.get('lost')}, duplicates {chat_total.get('duplicates')}, "
         f"not sent (socket down) {chat_total.get('sendFailed')}, answered with an error "
         f"{json.dumps(chat_total.get('sendErrors') or {})}"),
        ("chat: every message sent is stored", stored == chat_total.get("sent"),
         f"stored {stored}, sent {chat_total.get('sent')}"),
        ("heartbeats: every one answered 200 with is_mining true", hb_bad == 0 and activity_bad == 0,
         f"{hb_total.get('sent')} sent, {hb_bad} bad ({json.dumps(hb_total.get('errorKinds') or {})}), "
         f"{activity_bad} failed activity checks"),
        ("no failed RQ job", sum(failed.values()) == 0, ", ".join(f"{q} {n}" for q, n in failed.items())),
    ]  # fmt: skip
    p99s = [r["chat"]["p99"] for r in minutes if r["chat"]["p99"] is not None]
    if len(p99s) >= 4:
        first, second = median(p99s[: len(p99s) // 2]), median(p99s[len(p99s) // 2 :])
        lines += ["", f"Chat p99, median of the minutes: first half {first:.1f} ms, second half {second:.1f} ms "
                  "(shown, not judged: other work on the machine moves it)."]  # fmt: skip
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    for name, ok, detail in checks:
        shown = "PASS" if ok else "not judged (needs 10 minutes or more)" if ok is None else "FAIL"
        lines.append(f"| {name} | {shown} | {detail} |")
    passed = all(ok is not False for _, ok, _ in checks)
    if sampler.others:
        lines += ["", "WARNING: other benchmarks ran during the soak; latency figures are skewed:"]
        lines += [f"- `{cmd}`" for cmd in sorted(sampler.others)]
    lines += ["", f"Verdict: {'PASS' if passed else 'FAIL'}"]
    return "\n".join(lines) + "\n", passed


# ---- the run ----


def run(args: argparse.Namespace) -> int:
    chat, chat_source = chat_scenario(args)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    workdir = tempfile.mkdtemp(prefix="bsn-soak-")
    out_dir = RESULTS / "soak"
    redis_server = PrivateRedis(os.path.join(workdir, "redis"), persist=False).start()
    web: Web | None = None
    dynos: dict[str, Dyno] = {}
    sampler: Sampler | None = None
    driver: subprocess.Popen | None = None
    try:
        with database(args.db, workdir, prefix="bsn_soak_") as database_url:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = dict(os.environ)
            env.update(
                DATABASE_URL=database_url, REDIS_URL=redis_server.url, BSN_INSTANCE_PATH=workdir, PORT=str(port),
                BSN_ENV="production", SECRET_KEY="soak-throwaway-secret-key-not-for-production", LOG_LEVEL="WARNING",
                PYTHONUNBUFFERED="1", PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            )  # fmt: skip
            migrate(env)
            print(f"[soak] seeding {args.miners} miners and {chat['rooms'] * chat['clientsPerRoom']} chat users",
                  flush=True)  # fmt: skip
            seeded = seed(database_url, redis_server.url, args.miners, chat)
            command = procfile_web_command(port)
            web = Web(command, env, os.path.join(workdir, "web.log"))
            web.start()
            dynos = {name: Dyno(name, env, workdir) for name in ("worker", "scheduler")}
            web.wait_healthy(url + "/health", 60)
            wait_ready(url, {"web": web.process, **{n: d.process for n, d in dynos.items()}}, 90)
            sampler = Sampler(web, dynos, redis_server.url, args.sample_seconds)
            sampler.start()
            config = {
                "url": url,
                "durationSeconds": args.minutes * 60,
                "chat": {"rooms": seeded["rooms"], "intervalMs": chat["intervalMs"],
                         "payloadBytes": chat["payloadBytes"]},
                "miners": {"tokens": seeded["miner_tokens"], "heartbeatSeconds": args.heartbeat_seconds,
                           # Well inside ACTIVITY_TIMEOUT (an hour), so sessions of a long run go on.
                           "activitySeconds": 15 * 60},
            }  # fmt: skip
            config_path = os.path.join(workdir, "load.json")
            Path(config_path).write_text(json.dumps(config))
            driver = subprocess.Popen(
                ["node", str(HERE / "load.mjs"), config_path], cwd=REPO, stdout=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            # The driver ends by itself; this bounds it whatever happens (connect time, drain, a hang).
            killer = threading.Timer(args.minutes * 60 + 300, driver.kill)
            killer.start()
            minutes, summary = [], {}
            for line in driver.stdout:
                message = json.loads(line)
                if message["type"] == "ready":
                    sampler.t0 = time.monotonic()
                    print(f"[soak] {message['clients']} chat clients joined; {args.minutes:g} minutes of load",
                          flush=True)  # fmt: skip
                elif message["type"] == "minute":
                    minutes.append(message)
                    c, h = message["chat"], message["heartbeat"]
                    last = sampler.samples[-1] if sampler.samples else {}
                    print(
                        f"[soak] minute {message['minute'] + 1}: web {fmt(last.get('web'))} MiB, worker "
                        f"{fmt(last.get('worker'))} MiB, scheduler {fmt(last.get('scheduler'))} MiB; chat "
                        f"{c['delivered']}/{c['expected']} p99 {fmt(c['p99'])} ms; heartbeats {h['n']} p99 "
                        f"{fmt(h['p99'])} ms",
                        flush=True,
                    )
                elif message["type"] == "summary":
                    summary = message
                elif message["type"] == "fatal":
                    raise RuntimeError(f"the load driver failed: {message}")
            driver.wait()
            killer.cancel()
            sampler.stop()
            if not summary:
                raise RuntimeError(f"the load driver ended without a summary (exit {driver.returncode})")
            web.stop()
            for dyno in dynos.values():
                dyno.stop()
            stored = stored_messages(database_url, redis_server.url)
            failed = failed_jobs(redis_server.url)
            text, passed = report(args, chat, chat_source, command, sampler, minutes, summary, stored, failed, started)
            saved = save_report(text, out_dir, f"soak-{args.db}")
            saved.with_suffix(".json").write_text(
                json.dumps({"samples": sampler.samples, "minutes": minutes, "summary": summary}, indent=1)
            )
            if not passed:
                for name in ("web", "worker", "scheduler"):
                    log = Path(workdir, f"{name}.log")
                    if log.exists():
                        (out_dir / f"{saved.stem}-{name}.log").write_text(log.read_text(errors="replace")[-200_000:])
            return 0 if passed else 1
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        if sampler is not None:
            sampler.stop()
        if web is not None:
            web.stop()
        for dyno in dynos.values():
            dyno.stop()
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    exit_on_sigterm()
    args = parse_args()
    try:
        return run(args)
    except RuntimeError as exc:
        print(f"[soak] {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

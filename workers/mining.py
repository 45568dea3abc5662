"""Mining jobs: the sweep, the leaderboard rebuild, and the optimizer run as a subprocess."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from bsn import amounts
from bsn.clock import isoformat
from bsn.clock import now as clock_now
from bsn.extensions import db, redis_store
from bsn.models import MiningSession, MiningState, User
from bsn.services import heartbeats, mining
from workers import queues

log = logging.getLogger(__name__)


ANNOUNCE_BATCH = 1000


def sweep() -> int:
    """End lapsed sessions, then fan the notices out on the high queue, a thousand users a job."""
    ended = mining.sweep()
    for start in range(0, len(ended), ANNOUNCE_BATCH):
        batch = [(uid, isoformat(at), reason) for uid, at, reason in ended[start : start + ANNOUNCE_BATCH]]
        queues.enqueue("workers.mining.announce_stopped", batch, queue_name=queues.HIGH, timeout=300, retries=2)
    return len(ended)


def announce_stopped(batch: list) -> None:
    mining.announce_stopped(batch)


def rebuild_leaderboards() -> None:
    mining.rebuild_leaderboards()


def flush_heartbeats() -> int:
    return heartbeats.flush()


# ---- the optimizer ----

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT_TTL = 3600
LAST_RUN_TTL = 24 * 3600  # the raw output of the last run, good or bad, for a day
STDERR_TAIL = 2000


def export_sessions(path: str, since) -> int:
    """Write the sessions that started since `since` in the optimizer's input format; returns how many."""
    at = clock_now()
    heartbeats.flush()
    rows = db.session.execute(
        select(MiningSession, MiningState.streak_days)
        .join(MiningState, MiningState.user_id == MiningSession.user_id)
        .where(MiningSession.started_at >= since)
        .order_by(MiningSession.id)
    ).all()
    sessions = []
    for session, streak_days in rows:
        live = mining.is_live(session, at)
        sessions.append(
            {
                "user_id": session.user_id,
                "started_at": isoformat(session.started_at),
                "ended_at": None if live else isoformat(mining.session_end(session)),
                "last_heartbeat": isoformat(session.last_heartbeat),
                "power": amounts.to_str(session.power),
                "accrued": amounts.to_str(mining.accrued(session, at)),
                "end_reason": None if live else mining.end_reason(session),
                "streak_days": streak_days,
            }
        )
    user_count = db.session.scalar(select(func.count()).select_from(User))
    with open(path, "w") as handle:
        json.dump({"sessions": sessions, "user_count": user_count}, handle)
    return len(sessions)


def optimize() -> dict:
    """One optimizer cycle. A failure keeps the last good report and records why in `last_run`."""
    config = current_app.config
    client = redis_store.client
    started = time.time()
    log.info("mining optimizer: cycle started")
    with tempfile.TemporaryDirectory(prefix="bsn-optimizer-") as workdir:
        sessions_path = os.path.join(workdir, "sessions.json")
        count = export_sessions(sessions_path, clock_now() - timedelta(seconds=config["MINING_OPTIMIZATION_WINDOW"]))
        args = [
            config["MINING_OPTIMIZER_PYTHON"] or sys.executable,
            "-m",
            config["MINING_OPTIMIZER_MODULE"],
            "--sessions",
            sessions_path,
            "--daily-budget",
            config["MINING_DAILY_EMISSION_BUDGET"],
            "--heartbeat-timeout",
            str(config["HEARTBEAT_TIMEOUT"]),
        ]
        if config["MINING_MARKET_FILE"]:
            args += ["--market", config["MINING_MARKET_FILE"]]
        outcome = _execute(args, config["MINING_OPTIMIZATION_TIMEOUT"])
    outcome.update(sessions=count, duration=round(time.time() - started, 3), finished_at=isoformat(clock_now()))
    if outcome["status"] != "ok":
        log.error(
            "mining optimizer: cycle failed: %s (exit code %s); stderr ends: %s",
            outcome["reason"],
            outcome.get("exit_code"),
            outcome.get("stderr_tail", "")[-500:],
        )
        client.set(mining.OPTIMIZATION_LAST_RUN_KEY, json.dumps(outcome), ex=LAST_RUN_TTL)
        return {key: outcome[key] for key in ("status", "reason")}
    report = outcome.pop("report")
    pipe = client.pipeline()
    pipe.set(mining.OPTIMIZATION_KEYS["report"], json.dumps(report), ex=REPORT_TTL)
    pipe.set(mining.OPTIMIZATION_KEYS["timestamp"], outcome["finished_at"], ex=REPORT_TTL)
    pipe.set(mining.OPTIMIZATION_KEYS["total_profit"], str(report.get("total_profit", "0")), ex=REPORT_TTL)
    pipe.set(mining.OPTIMIZATION_KEYS["best_algorithm"], str(report.get("best_algorithm", "")), ex=REPORT_TTL)
    pipe.set(mining.OPTIMIZATION_LAST_RUN_KEY, json.dumps(outcome), ex=LAST_RUN_TTL)
    pipe.execute()
    log.info(
        "mining optimizer: cycle succeeded over %d sessions; best algorithm %s", count, report.get("best_algorithm")
    )
    return {"status": "ok", "best_algorithm": report.get("best_algorithm")}


def _execute(args: list[str], timeout: int) -> dict:
    """Run the optimizer without a shell; kill it at the timeout. Returns the outcome, with `report` on success."""
    try:
        completed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return {
            "status": "failed",
            "reason": f"timed out after {timeout} s",
            "exit_code": None,
            "stdout": _text(exc.stdout)[-STDERR_TAIL:],
            "stderr_tail": _text(exc.stderr)[-STDERR_TAIL:],
        }
    except OSError as exc:
        return {"status": "failed", "reason": f"could not start: {exc}", "exit_code": None}
    base = {
        "exit_code": completed.returncode,
        "stdout": completed.stdout[-20000:],
        "stderr_tail": completed.stderr[-STDERR_TAIL:],
    }
    if completed.returncode != 0:
        return {"status": "failed", "reason": "exit code not 0", **base}
    try:
        report = json.loads(completed.stdout)
    except ValueError:
        return {"status": "failed", "reason": "output is not JSON", **base}
    if not isinstance(report, dict):
        return {"status": "failed", "reason": "output is not a JSON object", **base}
    return {"status": "ok", "reason": None, "report": report, **base}


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value

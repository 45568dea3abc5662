"""Entry of the mining benchmarks: heartbeat (req/s under gunicorn) and sweep (mining.sweep() over 1M sessions)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Run as a script, so the repository root is not on the path yet; and the script's own folder must leave it,
# or this file, bench.py, would shadow the bench package.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.common import exit_on_sigterm  # noqa: E402


def percents(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or any(not 0 < v <= 100 for v in values):
        raise argparse.ArgumentTypeError("percentages in (0, 100], separated by commas")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", nargs="?", choices=("heartbeat", "sweep", "all"), default="all")
    parser.add_argument(
        "--db", choices=("sqlite", "postgresql", "both"), default="sqlite", help="database (default sqlite)"
    )
    heartbeat = parser.add_argument_group("heartbeat")
    heartbeat.add_argument("--users", type=int, default=10_000, help="users mining, each with a token (10000)")
    heartbeat.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run (10)")
    heartbeat.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each measured run (2)")
    heartbeat.add_argument("--connections", type=int, default=10, help="wrk connections (10)")
    heartbeat.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    heartbeat.add_argument("--rounds", type=int, default=2, help="interleaved rounds of both endpoints (2)")
    heartbeat.add_argument("--start-timeout", type=float, default=60, help="seconds for gunicorn to answer /health")
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--rows", type=int, default=1_000_000, help="open mining sessions, one user each (1000000)")
    sweep.add_argument("--lapsed", type=float, default=1.0, help="percent lapsed for the main measurement (1)")
    sweep.add_argument("--levels", type=percents, default=[0.1, 1, 5], help="percents lapsed to compare (0.1,1,5)")
    sweep.add_argument("--repeats", type=int, default=3, help="timed sweeps per level after a reset (3)")
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.threads, args.rounds, args.users, args.rows, args.repeats) < 1:
        parser.error("--duration, --connections, --threads, --rounds, --users, --rows and --repeats must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.connections < args.threads:
        parser.error("wrk needs --connections >= --threads")
    if not 0 < args.lapsed <= 100:
        parser.error("--lapsed is a percentage in (0, 100]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.which in ("heartbeat", "all") and shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run bench/mining/run.sh, or apt-get install wrk")
    exit_on_sigterm()
    # Imported here: they import the app, which has no business loading when the arguments are wrong.
    from bench.mining import heartbeat, sweep

    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    benchmarks = [b for name, b in (("heartbeat", heartbeat), ("sweep", sweep)) if args.which in (name, "all")]
    reports = [b.main(args, kind) for b in benchmarks for kind in kinds]
    if len(reports) > 1:
        print("\n---\n\n".join(reports))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        # Expected failures (a server that does not boot, a missing database) need their message, not a traceback.
        sys.exit(f"benchmark failed: {exc}")
    except KeyboardInterrupt:
        # Everything was stopped and removed on the way out: a traceback would only hide that.
        sys.exit("benchmark interrupted")

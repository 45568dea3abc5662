"""Command line: read the input files, print the report as one JSON object; exit 2 with one stderr line on bad input."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from workers.optimizer.inputs import Market, load_json, parse_market, parse_sessions
from workers.optimizer.report import build_report, render
from workers.optimizer.units import InputError, parse_decimal, parse_int, parse_time

EXIT_BAD_INPUT = 2
MAX_HEARTBEAT_TIMEOUT = 366 * 24 * 3600  # a session lasts a day; anything near a year is a typo


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # argparse's own error prints the usage block too; callers capture stderr and want one line.
        raise InputError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m workers.optimizer",
        description="Replay mining sessions under several reward algorithms and print a JSON report.",
    )
    parser.add_argument("--sessions", required=True, help='sessions JSON: {"sessions": [...], "user_count": N}')
    parser.add_argument("--market", help='token prices JSON: {"prices": [{"t": ISO, "price": "0.012"}, ...]}')
    parser.add_argument("--daily-budget", default="1000", help="tokens per day the emission may reach (default 1000)")
    parser.add_argument("--heartbeat-timeout", default="300", help="seconds a heartbeat covers (default 300)")
    parser.add_argument("--now", help="ISO instant of the report (default: the latest timestamp in the input)")
    return parser


def run(argv: list[str]) -> str:
    """The report text for these arguments; raises InputError on any bad input."""
    args = _parser().parse_args(argv)
    daily_budget = parse_decimal(args.daily_budget, "--daily-budget")
    try:
        timeout_seconds = int(args.heartbeat_timeout)
    except ValueError:
        raise InputError(f"--heartbeat-timeout: expected whole seconds, got {args.heartbeat_timeout!r}") from None
    if timeout_seconds > MAX_HEARTBEAT_TIMEOUT:
        raise InputError(f"--heartbeat-timeout: at most {MAX_HEARTBEAT_TIMEOUT} seconds, got {timeout_seconds}")
    heartbeat_timeout = timedelta(seconds=parse_int(timeout_seconds, "--heartbeat-timeout"))
    now = parse_time(args.now, "--now") if args.now is not None else None
    dataset = parse_sessions(load_json(args.sessions, "sessions"))
    market = parse_market(load_json(args.market, "market")) if args.market else Market()
    report = build_report(dataset, market, daily_budget=daily_budget, heartbeat_timeout=heartbeat_timeout, now=now)
    return render(report)


def main(argv: list[str] | None = None) -> int:
    try:
        text = run(sys.argv[1:] if argv is None else argv)
    except InputError as exc:
        return _bad_input(str(exc))
    except OverflowError as exc:
        # A timestamp so near year 9999 that adding a timeout or a day leaves datetime's range.
        return _bad_input(f"a timestamp is out of range: {exc}")
    sys.stdout.write(text)
    return 0


def _bad_input(message: str) -> int:
    message = " ".join(message.split())  # one line, whatever the message held
    print(f"workers.optimizer: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

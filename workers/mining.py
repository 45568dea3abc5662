"""Mining jobs: the sweep that records lapsed sessions, and the leaderboard rebuild."""

from bsn.services import mining


def sweep() -> int:
    return mining.sweep()


def rebuild_leaderboards() -> None:
    mining.rebuild_leaderboards()

"""Presence jobs: the sweep that takes users of dead connections offline."""

from bsn.services import presence


def sweep() -> int:
    return presence.sweep()

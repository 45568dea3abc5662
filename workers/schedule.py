"""Periodic jobs, declared as data: what runs, how often, on which queue, within what time."""

from __future__ import annotations

from dataclasses import dataclass

from workers.queues import DEFAULT, HIGH, LOW


@dataclass(frozen=True)
class Periodic:
    id: str  # stable: RQ accepts letters, digits, "_" and "-"
    func: str  # dotted path of a plain job function
    interval_setting: str  # name of the setting holding the interval in seconds
    timeout: int  # seconds a run may take before RQ kills it
    queue: str = DEFAULT
    enabled_setting: str | None = None  # a boolean setting that switches the job on


PERIODIC: tuple[Periodic, ...] = (
    Periodic("mining-sweep", "workers.mining.sweep", "CLEANUP_INTERVAL", timeout=120, queue=HIGH),
    Periodic("presence-sweep", "workers.presence.sweep", "PRESENCE_SWEEP_INTERVAL", timeout=60, queue=HIGH),
    Periodic("outbox-flush", "workers.outbox.flush", "OUTBOX_FLUSH_INTERVAL", timeout=300, queue=HIGH),
    Periodic("mining-heartbeats", "workers.mining.flush_heartbeats", "HEARTBEAT_FLUSH_INTERVAL", 120, HIGH),
    Periodic("mining-leaderboards", "workers.mining.rebuild_leaderboards", "LEADERBOARD_REBUILD_INTERVAL", 600, LOW),
    Periodic("story-purge", "workers.media.purge_stories", "STORY_PURGE_INTERVAL", timeout=600, queue=LOW),
    Periodic("dao-close", "workers.dao.close_due", "DAO_CLOSE_INTERVAL", timeout=300),
    Periodic("notification-emails", "workers.mail.send_digests", "NOTIFICATION_EMAIL_INTERVAL", 1800, LOW),
    Periodic("ledger-audit", "workers.tokens.audit_ledger", "LEDGER_AUDIT_INTERVAL", timeout=1800, queue=LOW),
    Periodic(
        "mining-optimizer",
        "workers.mining.optimize",
        "MINING_OPTIMIZATION_INTERVAL",
        timeout=600,  # above MINING_OPTIMIZATION_TIMEOUT: the job kills the subprocess first
        queue=LOW,
        enabled_setting="ENABLE_MINING_OPTIMIZATION",
    ),
)


def active(config) -> tuple[Periodic, ...]:
    """The declared jobs that are switched on."""
    return tuple(p for p in PERIODIC if p.enabled_setting is None or config[p.enabled_setting])


def by_id(periodic_id: str) -> Periodic:
    for periodic in PERIODIC:
        if periodic.id == periodic_id:
            return periodic
    raise KeyError(f"no periodic job {periodic_id!r} in workers/schedule.py")

"""Periodic jobs, declared as data: what runs, how often, on which queue, within what time."""

from __future__ import annotations

from dataclasses import dataclass

from workers.queues import DEFAULT


@dataclass(frozen=True)
class Periodic:
    id: str  # stable: RQ accepts letters, digits, "_" and "-"
    func: str  # dotted path of a plain job function
    interval_setting: str  # name of the setting holding the interval in seconds
    timeout: int  # seconds a run may take before RQ kills it
    queue: str = DEFAULT


PERIODIC: tuple[Periodic, ...] = ()

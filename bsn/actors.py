"""Who acts: services take any object with an `id`, so a caller known only by token needs no user row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Actor(Protocol):
    id: int


@dataclass(frozen=True)
class Caller:
    """An authenticated caller whose user row has not been loaded (the token cache answered)."""

    id: int
    # The account's cached copy (JSON) when the token check brought it along in its round trip: services
    # that present the caller use it instead of asking again. Valid for the request it came with.
    account: bytes | None = field(default=None, compare=False, repr=False)

"""Who acts: services take any object with an `id`, so a caller known only by token needs no user row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Actor(Protocol):
    id: int


@dataclass(frozen=True)
class Caller:
    """An authenticated caller whose user row has not been loaded (the token cache answered)."""

    id: int

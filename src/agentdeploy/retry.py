"""The one backoff rule: waits that grow by a factor up to a cap, optionally with jitter (so two runs that
collided once do not collide again). Every retry and poll loop takes its waits from here."""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff(first: float, *, factor: float = 2.0, cap: float = 10.0, jitter: bool = False) -> Iterator[float]:
    """first, first*factor, ... never above cap; with jitter each wait is scaled by a random 0.5-1.0."""
    delay = first
    while True:
        yield delay * random.uniform(0.5, 1.0) if jitter else delay
        delay = min(delay * factor, cap)

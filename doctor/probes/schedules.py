"""Schedules: plain functions `step -> bool`."""
from __future__ import annotations

from typing import Callable


def every(n: int) -> Callable[[int], bool]:
    """Track at steps 0, n, 2n, …"""
    if n < 1:
        raise ValueError(f"every(n) needs n >= 1, got {n}")

    def schedule(step: int) -> bool:
        return step % n == 0

    schedule.__doc__ = f"Track at steps {{k * {n} | k >= 0}}"
    return schedule

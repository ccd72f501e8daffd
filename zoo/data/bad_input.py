"""What to do with bad input (``data.on_bad``): stop with a clear error, or skip it and count."""
from __future__ import annotations

import logging
from typing import Literal

log = logging.getLogger(__name__)


class BadInput:
    """``bad(message, kind)`` raises DataError (on_bad=error) or counts a skip of ``kind``."""

    def __init__(self, policy: Literal["error", "skip"] = "error") -> None:
        if policy not in ("error", "skip"):
            raise ValueError(f"data.on_bad must be 'error' or 'skip', got {policy!r}")
        self.policy = policy
        self.counts: dict[str, int] = {}

    def __call__(self, message: str, kind: str) -> None:
        from zoo.errors import DataError

        if self.policy == "error":
            raise DataError(f"{message}. Fix the data, or set data.on_bad=skip to leave such input out")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        log.debug(message)

    def report(self) -> None:
        if self.counts:
            log.warning("data: skipped %s (data.on_bad=skip)", ", ".join(f"{n} {k}" for k, n in self.counts.items()))

"""Requests per API key, as token buckets: ``rate`` requests a second on average, bursts of ``burst``.

A request beyond that is answered ``429 Too Many Requests`` with ``Retry-After`` (whole seconds
until a token is there), which the REST store raises as ``RateLimitError(retry_after=...)``.
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets per key. ``rate <= 0`` turns limiting off."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, 2 * rate))
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill (monotonic)]
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take a token for ``key``: ``0`` if there was one, else the seconds until there will be."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [self.burst, now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait: float) -> str:
        """``Retry-After`` is whole seconds: round up, at least 1."""
        return str(max(1, math.ceil(wait)))

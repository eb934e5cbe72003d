"""Token buckets by name (an API key's id, or a client address): `rate` requests per second
sustained, bursts up to `burst`. The buckets live in one process: each worker of `behavior serve
--workers N` keeps its own, so a key may make up to N times the rate in all."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, time of last update)
        self._lock = threading.Lock()

    def wait(self, key_id: str) -> float:
        """The seconds until `key_id` has a token (0.0 if it has one now); takes nothing."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key_id)
        if bucket is None:
            return 0.0
        tokens = min(float(self.burst), bucket[0] + (self._clock() - bucket[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key_id: str) -> float:
        """Take one token for `key_id`: 0.0 if granted, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))

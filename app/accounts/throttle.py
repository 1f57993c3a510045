"""Sign-in failures counted per client address and per account name: past the limit in the window, sign-in is refused for a while."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Keys remembered at most (addresses and names); the least recently failed are forgotten first, so memory stays bounded.
MAX_KEYS = 20_000


class LoginThrottle:
    """In-process failure counts (each web process counts its own): `failures` allowed per `window_seconds` per key."""

    def __init__(self, failures: int, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window_seconds = window_seconds
        self.clock = clock
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def keys(address: str, name: str) -> tuple[str, str]:
        """The two counters one attempt touches: the client's address and the account name (case-folded)."""
        return f"address:{address}", f"name:{name.casefold()}"

    def retry_after(self, address: str, name: str) -> int:
        """Seconds until this address and name may try again; 0 if they may now."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in self.keys(address, name):
                times = self._recent(key, now)
                if len(times) >= self.failures:
                    wait = max(wait, times[len(times) - self.failures] + self.window_seconds - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, address: str, name: str) -> None:
        """Count a failed attempt against the address and the name."""
        now = self.clock()
        with self._lock:
            for key in self.keys(address, name):
                times = self._recent(key, now)
                times.append(now)
                while len(times) > self.failures:  # older failures than the last `failures` never decide a wait
                    times.popleft()
                self._failed[key] = times
                self._failed.move_to_end(key)
            while len(self._failed) > MAX_KEYS:
                self._failed.popitem(last=False)

    def succeeded(self, name: str) -> None:
        """Forget the name's failures (its owner knows the password); the address keeps its count."""
        with self._lock:
            self._failed.pop(self.keys("", name)[1], None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failed.get(key, deque())
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            self._failed.pop(key, None)
        return times

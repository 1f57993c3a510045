"""Sign-in failures counted per client address and per account name: past the limit in the window, sign-in is refused for a while."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from sqlalchemy import delete
from sqlmodel import Session, col, select

from app.accounts.tables import LoginFailure


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class LoginThrottle:
    """`failures` allowed per `window_seconds` per key, counted in the database: every web process sees each failure."""

    def __init__(self, failures: int, window_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.failures = failures
        self.window_seconds = window_seconds
        self.clock = clock

    @staticmethod
    def keys(address: str, name: str) -> tuple[str, str]:
        """The two counters one attempt touches, hashed: the client's address and the account name (case-folded)."""
        return _digest(f"address:{address}"), _digest(f"name:{name.casefold()}")

    def retry_after(self, session: Session, address: str, name: str) -> int:
        """Seconds until this address and name may try again; 0 if they may now."""
        now = self.clock()
        wait = 0.0
        for key in self.keys(address, name):
            # the newest `failures` in the window: the oldest of them decides when one more may be tried
            recent = session.exec(
                select(LoginFailure.failed_at)
                .where(LoginFailure.key_hash == key, LoginFailure.failed_at > now - self.window_seconds)
                .order_by(col(LoginFailure.failed_at).desc())
                .limit(self.failures)
            ).all()
            if len(recent) >= self.failures:
                wait = max(wait, recent[-1] + self.window_seconds - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, session: Session, address: str, name: str) -> None:
        """Count a failed attempt against the address and the name; failures older than the window are dropped."""
        now = self.clock()
        session.exec(delete(LoginFailure).where(col(LoginFailure.failed_at) <= now - self.window_seconds))
        session.add_all([LoginFailure(key_hash=key, failed_at=now) for key in self.keys(address, name)])
        session.commit()

    def succeeded(self, session: Session, name: str) -> None:
        """Forget the name's failures (its owner knows the password); the address keeps its count."""
        session.exec(delete(LoginFailure).where(col(LoginFailure.key_hash) == self.keys("", name)[1]))
        session.commit()

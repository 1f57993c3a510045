"""PostgreSQL LISTEN/NOTIFY: triggers (migration 0004) announce job and metric writes; a listener thread passes them on.

Idle workers and the web process's shared SSE polls wake on a notice instead of waiting out their poll
interval; polling stays as the fallback (a lost connection, SQLite, which has no notifications).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

logger = logging.getLogger(__name__)

CHANNEL = "lorapedia_jobs"
RECONNECT_SECONDS = 2.0
# How often the listener looks at its stop flag between notices
STOP_CHECK_SECONDS = 0.5

Notice = Callable[[str, int], None]  # (kind: "job" or "metric", job id)


class JobListener:
    """A daemon thread that LISTENs on CHANNEL and calls on_notice for each notice; it reconnects after errors."""

    def __init__(self, conninfo: str, on_notice: Notice) -> None:
        self.conninfo = conninfo
        self.on_notice = on_notice
        self.listening = threading.Event()  # set while LISTEN is in force (tests wait on it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> JobListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (within STOP_CHECK_SECONDS)."""
        self._stop.set()
        self._thread.join(timeout=STOP_CHECK_SECONDS * 4)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=STOP_CHECK_SECONDS):
                            self._dispatch(notice.payload)
            except psycopg.Error:
                logger.warning("LISTEN %s lost its connection; polling only until it reconnects", CHANNEL, exc_info=True)
            finally:
                self.listening.clear()
            self._stop.wait(RECONNECT_SECONDS)

    def _dispatch(self, payload: str) -> None:
        kind, _, job_id = payload.partition(":")
        try:
            self.on_notice(kind, int(job_id))
        except Exception:  # a failing subscriber must not end the listener; polling still covers it
            logger.exception("a %s notice for job %s failed to wake its subscriber", kind, job_id)


def listen(engine: Engine, on_notice: Notice) -> JobListener | None:
    """A started listener on the engine's database; None where notifications do not exist (SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return JobListener(conninfo, on_notice).start()

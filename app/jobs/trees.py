"""Module trees for pasted configs: memory, then the database, then the tree helper process (which imports torch).

The web process never imports torch: `TreeHelper` runs `python -m app.training.trees` on first need and keeps it
warm, speaking JSON lines. `TreeService.architecture` is blocking; callers run it off the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.calc.architecture import Architecture
from app.calc.tree import architecture_from_tree, check_config_bounds, library_versions, tree_key
from app.jobs.tables import ModuleTree
from app.spec.errors import FieldError

logger = logging.getLogger(__name__)

HELPER_TIMEOUT_SECONDS = 30.0  # a config whose model takes longer to build is refused (and the helper restarted)
START_TIMEOUT_SECONDS = 120.0  # importing torch and transformers on a busy host
MEMORY_ENTRIES = 256
MAX_HELPER_LINE = 64_000_000  # a tree of the largest accepted config stays far below this


class TreeHelper:
    """One warm `python -m app.training.trees` process; requests are serialised by a lock."""

    def __init__(self, timeout: float = HELPER_TIMEOUT_SECONDS, command: list[str] | None = None) -> None:
        self.timeout = timeout
        self.command = command or [sys.executable, "-m", "app.training.trees"]
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.counter = 0

    def build(self, config: dict[str, Any], task: str | None) -> dict[str, Any]:
        """{"tree": ...} or {"error": {...}} for one config; FieldError when the helper fails or times out."""
        with self.lock:
            self._ensure_started()
            self.counter += 1
            request = {"id": self.counter, "config": config, "task": task}
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                self._stop_locked()
                raise FieldError(("model_config",), "the module-tree helper stopped; try again", "unavailable") from None
            answer = self._read(self.timeout)
            if answer is None:
                self._stop_locked()
                raise FieldError(("model_config",), f"transformers took longer than {self.timeout:.0f} s to build this "
                                 "model on the meta device; it is refused", "timeout")
            return answer

    def _ensure_started(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.lines = queue.Queue()
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=env, bufsize=1)
        threading.Thread(target=self._pump, args=(self.process, self.lines), name="tree-helper-reader",
                         daemon=True).start()
        ready = self._read(START_TIMEOUT_SECONDS)
        if not ready or not ready.get("ready"):
            self._stop_locked()
            raise FieldError(("model_config",), "the module-tree helper did not start", "unavailable")
        logger.info("module-tree helper started, pid %d", self.process.pid)

    @staticmethod
    def _pump(process: subprocess.Popen, lines: queue.Queue) -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    def _read(self, timeout: float) -> dict[str, Any] | None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            return None
        return json.loads(line)

    def _stop_locked(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait()

    def stop(self) -> None:
        """End the helper process, if running."""
        with self.lock:
            process, self.process = self.process, None
        if process is not None:
            process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class TreeService:
    """Architectures of pasted configs: an in-memory LRU, the ModuleTree table, then the helper."""

    def __init__(self, engine: Engine | None, helper: TreeHelper | None = None) -> None:
        self.engine = engine
        self.owns_helper = helper is None
        self.helper = helper or TreeHelper()
        self.versions = library_versions()
        self.memory: OrderedDict[str, Architecture | FieldError] = OrderedDict()
        self.memory_lock = threading.Lock()

    def architecture(self, config: dict[str, Any], task: str | None) -> Architecture:
        """The Architecture of `config` for `task`; a FieldError when transformers cannot build it."""
        check_config_bounds(config)
        key = tree_key(config, task, self.versions)
        found = self._remembered(key)
        if found is None:
            found = self._stored(key)
        if found is None:
            found = self._built(key, config, task)
        self._remember(key, found)
        if isinstance(found, FieldError):
            raise FieldError(found.loc, found.message, found.kind)
        return found

    def close(self) -> None:
        """Stop the helper process if this service started it."""
        if self.owns_helper:
            self.helper.stop()

    def _remembered(self, key: str) -> Architecture | FieldError | None:
        with self.memory_lock:
            found = self.memory.get(key)
            if found is not None:
                self.memory.move_to_end(key)
            return found

    def _remember(self, key: str, value: Architecture | FieldError) -> None:
        with self.memory_lock:
            self.memory[key] = value
            while len(self.memory) > MEMORY_ENTRIES:
                self.memory.popitem(last=False)

    def _stored(self, key: str) -> Architecture | FieldError | None:
        if self.engine is None:
            return None
        with Session(self.engine) as session:
            row = session.get(ModuleTree, key)
            if row is None:
                return None
            return _outcome(row.tree, row.error)

    def _built(self, key: str, config: dict[str, Any], task: str | None) -> Architecture | FieldError:
        answer = self.helper.build(config, task)  # a helper failure raises, and is not stored
        tree, error = answer.get("tree"), answer.get("error")
        if self.engine is not None:
            row = ModuleTree(key=key, model_type=str(config.get("model_type"))[:200], task=task, tree=tree, error=error)
            try:
                with Session(self.engine) as session:
                    session.add(row)
                    session.commit()
            except IntegrityError:
                pass  # another web host stored the same tree first
        return _outcome(tree, error)


def _outcome(tree: dict[str, Any] | None, error: dict[str, Any] | None) -> Architecture | FieldError:
    if tree is not None:
        return architecture_from_tree(tree)
    error = error or {}
    return FieldError(tuple(error.get("loc", ("model_config",))), str(error.get("message", "cannot be built")),
                      str(error.get("type", "unbuildable")))

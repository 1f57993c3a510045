"""Command line: `lorapedia serve | worker | prepare-model | init-db | record | trees | tree-helper`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from app.settings import get_settings

logger = logging.getLogger("lorapedia")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class EmbeddedWorker:
    """The worker process `serve` runs beside the web server, restarted (with a growing pause) whenever it exits unasked."""

    FIRST_PAUSE_SECONDS = 1.0
    MAX_PAUSE_SECONDS = 60.0
    HEALTHY_SECONDS = 60.0  # a worker that ran this long before exiting restarts after the first pause again

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.watcher = threading.Thread(target=self._watch, name="embedded-worker-watch", daemon=True)

    def start(self) -> None:
        """Start the worker and the thread that watches it."""
        self._spawn()
        self.watcher.start()

    def _spawn(self) -> bool:
        with self.lock:
            if self.stopping.is_set():
                return False
            # --parent-pid: should this process die without stopping it (SIGKILL, OOM), the worker exits by itself
            self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--parent-pid", str(os.getpid())])
            logger.info("started embedded worker, pid %d", self.process.pid)
            return True

    def _watch(self) -> None:
        pause = self.FIRST_PAUSE_SECONDS
        while True:
            started = time.monotonic()
            code = self.process.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= self.HEALTHY_SECONDS:
                pause = self.FIRST_PAUSE_SECONDS
            logger.warning("embedded worker (pid %d) exited unexpectedly with code %s; restarting it in %.0f s",
                           self.process.pid, code, pause)
            if self.stopping.wait(pause) or not self._spawn():
                return
            pause = min(pause * 2, self.MAX_PAUSE_SECONDS)

    def stop(self) -> None:
        """Stop watching, then stop the worker: SIGTERM, and SIGKILL after 15 s."""
        with self.lock:
            self.stopping.set()
            process = self.process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _exit_on_signal(signum: int, frame: object) -> None:
    """End the process as a SystemExit, so `finally` blocks run; the exit status is the shell's 128 + signal."""
    raise SystemExit(128 + signum)


def serve(host: str, port: int, with_worker: bool) -> None:
    """Run the web server, and one worker process beside it unless told not to."""
    import uvicorn

    from app.main import create_app

    from app.jobs.db import init_db, make_engine

    init_db(make_engine(get_settings()))  # before the worker starts, so the two never race to create tables
    # uvicorn shuts down gracefully on SIGTERM, restores the previous handler and raises the signal again;
    # with the default handler that would end the process before `finally` stops the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    worker = EmbeddedWorker() if with_worker else None
    if worker is not None:
        worker.start()
    try:
        uvicorn.run(create_app(), host=host, port=port, log_level=get_settings().log_level)
    finally:
        if worker is not None:
            worker.stop()


def _load_run_training():
    """app.training.run.run_training: the worker's trainer (importing it loads torch)."""
    from app.training.run import run_training

    return run_training


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lorapedia` command."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="lorapedia", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the web server (with an embedded worker)")
    serve_parser.add_argument("--host", default=settings.host)
    serve_parser.add_argument("--port", type=int, default=settings.port)
    serve_parser.add_argument("--no-worker", action="store_true", help="do not start the embedded worker")
    worker_parser = commands.add_parser("worker", help="run a training worker that claims jobs from the database")
    worker_parser.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent (set by serve)")
    commands.add_parser("prepare-model", help="convert the offline SmolLM2-135M-Instruct weights into the cache")
    commands.add_parser("init-db", help="create the database tables")
    record_parser = commands.add_parser("record", help="run the recorded sweeps on SmolLM2 and write content/runs/*.json")
    record_parser.add_argument("fields", nargs="*", help="swept fields to record (default: every recorded sweep)")
    trees_parser = commands.add_parser("trees", help="rebuild the catalogue's module trees (content/models/trees) with transformers")
    trees_parser.add_argument("--check", action="store_true", help="only report trees that differ; exit 1 if any")
    commands.add_parser("tree-helper", help="answer module-tree requests as JSON lines on stdin/stdout (started by serve)")
    args = parser.parse_args(argv)
    _configure_logging(settings.log_level)

    if args.command == "serve":
        serve(args.host, args.port, with_worker=settings.embedded_worker and not args.no_worker)
    elif args.command == "worker":
        settings.apply_worker_environment()  # before app.training.run imports torch
        from app.jobs.worker import run_worker

        run_worker(settings, _load_run_training, parent_pid=args.parent_pid)
    elif args.command == "prepare-model":
        settings.apply_worker_environment()
        from app.training.loading import prepare_smollm2

        prepare_smollm2(settings)
    elif args.command == "record":
        settings.apply_worker_environment()
        from app.training.record import record

        record(settings, args.fields)
    elif args.command == "init-db":
        from app.jobs.db import init_db, make_engine

        init_db(make_engine(settings))
    elif args.command == "trees":
        from app.training.trees import write_catalogue_trees

        changed = write_catalogue_trees(settings.content_dir / "models", check=args.check)
        for model_id in changed:
            logger.info("%s tree %s", model_id, "differs" if args.check else "written")
        if args.check and changed:
            raise SystemExit(1)
    elif args.command == "tree-helper":
        from app.training.trees import serve_lines

        serve_lines()


if __name__ == "__main__":
    main()

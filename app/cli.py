"""Command line: `lorapedia serve | worker | prepare-model | init-db | user add | token create | record | trees | tree-helper`."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from app.settings import get_settings

logger = logging.getLogger("lorapedia")
GRACEFUL_SHUTDOWN_SECONDS = 10  # requests still open this long after SIGTERM (event streams end at once) are cut
# uvicorn closes an idle kept-alive connection after 5 s by default, the idle time httpx's pool (and many
# clients) keep one for too: a request sent on a connection the server is closing at that moment fails with a
# read error (the likely cause of the load benchmark's stray ReadErrors). Proxies keep upstream connections 60 s
# or more, so the server waits longer than any of them.
KEEP_ALIVE_SECONDS = 75


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class EmbeddedWorker:
    """The worker process `serve` runs beside the web server, restarted (with a growing pause) whenever it exits unasked."""

    FIRST_PAUSE_SECONDS = 1.0
    MAX_PAUSE_SECONDS = 60.0
    HEALTHY_SECONDS = 60.0  # a worker that ran this long before exiting restarts after the first pause again

    def __init__(self, settings=None) -> None:
        self.settings = settings or get_settings()
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
            self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--parent-pid", str(os.getpid()),
                                             "--nice", str(self.settings.embedded_worker_nice)])
            logger.info("started embedded worker, pid %d", self.process.pid)
            return True

    def _watch(self) -> None:
        pause = self.FIRST_PAUSE_SECONDS
        while True:
            started = time.monotonic()
            code = self.process.wait()
            self._interrupt_jobs(self.process.pid, code)
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= self.HEALTHY_SECONDS:
                pause = self.FIRST_PAUSE_SECONDS
            logger.warning("embedded worker (pid %d) exited unexpectedly with code %s; restarting it in %.0f s",
                           self.process.pid, code, pause)
            if self.stopping.wait(pause) or not self._spawn():
                return
            pause = min(pause * 2, self.MAX_PAUSE_SECONDS)

    def _interrupt_jobs(self, pid: int, code: int | None) -> None:
        """Mark the dead worker's running job interrupted now, rather than when its lease runs out."""
        from app.jobs import queue
        from app.jobs.db import make_engine

        engine = make_engine(self.settings, pool_size=1)
        try:
            queue.interrupt_worker_jobs(engine, f"{socket.gethostname()}:{pid}:",
                                        f"interrupted: its worker process exited (code {code}) during the run; its owner can retry it")
        except Exception:  # the database may be down too; the lease still expires
            logger.exception("could not mark the jobs of worker pid %d interrupted", pid)
        finally:
            engine.dispose()

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

    from app.jobs.db import init_db, make_engine
    from app.main import create_app
    from app.web.sse import close_streams

    settings = get_settings().model_copy(update={"host": host, "port": port})
    if not settings.is_loopback and not settings.public_url:
        # canonical and link-preview URLs would otherwise follow whatever Host header a client sends
        raise SystemExit(f"lorapedia serve --host {host}: a non-loopback bind needs LORAPEDIA_PUBLIC_URL "
                         "(the address people reach this site at, e.g. https://lorapedia.example.org)")
    engine = make_engine(settings, pool_size=1)
    init_db(engine)  # before the worker starts, so the two never race to create tables
    engine.dispose()
    # uvicorn shuts down gracefully on SIGTERM, restores the previous handler and raises the signal again;
    # with the default handler that would end the process before `finally` stops the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    worker = EmbeddedWorker(settings) if with_worker else None
    if worker is not None:
        worker.start()
    app = create_app(settings)

    class Server(uvicorn.Server):
        """uvicorn waits for open responses before it shuts down: end the event streams as soon as it is told to stop."""

        def handle_exit(self, sig: int, frame) -> None:
            close_streams(app)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, timeout_keep_alive=KEEP_ALIVE_SECONDS)
    try:
        Server(config).run()
    finally:
        if worker is not None:
            worker.stop()


def _load_run_training():
    """app.training.run.run_training: the worker's trainer (importing it loads torch)."""
    from app.training.run import run_training

    return run_training


def add_user(name: str, admin: bool) -> None:
    """`lorapedia user add NAME [--admin]`: the password is prompted for on a terminal, else read from stdin's first line."""
    from sqlmodel import Session

    from app.accounts import AccountError, create_account
    from app.jobs.db import init_db, make_engine

    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("the passwords differ; nothing was changed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    engine = make_engine(get_settings(), pool_size=1)
    init_db(engine)
    try:
        with Session(engine) as session:
            account = create_account(session, name, password, is_admin=admin)
            print(f"created {'admin ' if admin else ''}account {account.name} (id {account.id})")
    except AccountError as error:
        raise SystemExit(f"lorapedia user add: {error}") from error
    finally:
        engine.dispose()


def create_token(name: str, label: str) -> None:
    """`lorapedia token create NAME`: prints a new API token for the account, once."""
    from sqlmodel import Session

    from app.accounts import AccountError, create_token as new_token, find_account
    from app.jobs.db import init_db, make_engine

    engine = make_engine(get_settings(), pool_size=1)
    init_db(engine)
    try:
        with Session(engine) as session:
            account = find_account(session, name)
            if account is None:
                raise SystemExit(f"lorapedia token create: no account {name!r}")
            _, secret = new_token(session, account, label)
            print(secret)
    except AccountError as error:
        raise SystemExit(f"lorapedia token create: {error}") from error
    finally:
        engine.dispose()


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
    worker_parser.add_argument("--nice", type=int, default=0, choices=range(20), metavar="0-19",
                               help="lower this worker's CPU priority by this much (serve passes LORAPEDIA_EMBEDDED_WORKER_NICE)")
    commands.add_parser("prepare-model", help="convert the offline SmolLM2-135M-Instruct weights into the cache")
    commands.add_parser("init-db", help="create the database or upgrade it to the newest schema (Alembic migrations)")
    user_parser = commands.add_parser("user", help="manage accounts").add_subparsers(dest="user_command", required=True)
    add_parser = user_parser.add_parser("add", help="create an account; the password is prompted for, or read from stdin")
    add_parser.add_argument("name")
    add_parser.add_argument("--admin", action="store_true", help="may cancel and download anyone's jobs")
    token_parser = commands.add_parser("token", help="manage API tokens").add_subparsers(dest="token_command", required=True)
    token_create = token_parser.add_parser("create", help="print a new API token for an account")
    token_create.add_argument("name")
    token_create.add_argument("--label", default="cli")
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
        os.nice(args.nice)  # before torch starts its threads, which inherit it
        settings.apply_worker_environment()  # before app.training.run imports torch
        from app.jobs.worker import run_worker

        run_worker(settings, _load_run_training, parent_pid=args.parent_pid)
    elif args.command == "prepare-model":
        settings.apply_worker_environment()
        from app.training.loading import pick_precision, prepare_smollm2_in

        prepare_smollm2_in(settings, pick_precision(settings)[1])  # the fp32 cache, and the worker's dtype beside it
    elif args.command == "record":
        settings.apply_worker_environment()
        from app.training.record import record

        record(settings, args.fields)
    elif args.command == "init-db":
        from app.jobs.db import init_db, make_engine

        init_db(make_engine(settings, pool_size=1))
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
    elif args.command == "user":
        add_user(args.name, args.admin)
    elif args.command == "token":
        create_token(args.name, args.label)


if __name__ == "__main__":
    main()

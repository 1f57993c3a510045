"""Command line: `lorapedia serve | worker | prepare-model`."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from app.settings import get_settings

logger = logging.getLogger("lorapedia")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(host: str, port: int, with_worker: bool) -> None:
    """Run the web server, and one worker process beside it unless told not to."""
    import uvicorn

    from app.main import create_app

    from app.jobs.db import init_db, make_engine

    init_db(make_engine(get_settings()))  # before the worker starts, so the two never race to create tables
    worker = None
    if with_worker:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"])
        logger.info("started embedded worker, pid %d", worker.pid)
    try:
        uvicorn.run(create_app(), host=host, port=port, log_level=get_settings().log_level)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lorapedia` command."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="lorapedia", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the web server (with an embedded worker)")
    serve_parser.add_argument("--host", default=settings.host)
    serve_parser.add_argument("--port", type=int, default=settings.port)
    serve_parser.add_argument("--no-worker", action="store_true", help="do not start the embedded worker")
    commands.add_parser("worker", help="run a training worker that claims jobs from the database")
    commands.add_parser("prepare-model", help="convert the offline SmolLM2-135M-Instruct weights into the cache")
    commands.add_parser("init-db", help="create the database tables")
    args = parser.parse_args(argv)
    _configure_logging(settings.log_level)

    if args.command == "serve":
        serve(args.host, args.port, with_worker=settings.embedded_worker and not args.no_worker)
    elif args.command == "worker":
        from app.jobs.worker import run_worker

        run_worker(settings)
    elif args.command == "prepare-model":
        from app.training.models import prepare_smollm2

        prepare_smollm2(settings)
    elif args.command == "init-db":
        from app.jobs.db import init_db, make_engine

        init_db(make_engine(settings))


if __name__ == "__main__":
    main()

"""Shared fixtures: settings on a temp dir, the app and its TestClient, a live server, a browser page."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.jobs.trees import TreeHelper, TreeService
from app.main import create_app
from app.settings import PROJECT_ROOT, Settings
from app.web.security import CSRF_COOKIE, CSRF_HEADER

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a fresh var dir (database, adapters) and the real content and model cache."""
    return Settings(var_dir=tmp_path / "var", poll_seconds=0.05, heartbeat_seconds=0.5)


@pytest.fixture(scope="session")
def tree_helper() -> Iterator[TreeHelper]:
    """One warm module-tree helper for the whole session (it imports torch once)."""
    helper = TreeHelper()
    yield helper
    helper.stop()


@pytest.fixture
def app(settings: Settings, tree_helper: TreeHelper):
    """The app built from `settings`, sharing the session's tree helper."""
    application = create_app(settings)
    application.state.trees = TreeService(application.state.engine, tree_helper)
    return application


# A browser that has loaded one of the site's pages holds the CSRF cookie and sends its token with each form
TEST_CSRF_TOKEN = "test-csrf-token-0123456789abcdef"


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """A TestClient that has run the app's start-up and holds a CSRF token, as a browser on the site does."""
    with TestClient(app, cookies={CSRF_COOKIE: TEST_CSRF_TOKEN}, headers={CSRF_HEADER: TEST_CSRF_TOKEN}) as test_client:
        yield test_client


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM a process still running, and SIGKILL it if it has not exited after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class LiveServer:
    """A real `lorapedia serve` process on loopback."""

    url: str
    process: subprocess.Popen
    var_dir: Path
    log_path: Path

    def stop(self) -> None:
        """Stop the server (and its embedded worker) and wait for it."""
        stop_process(self.process)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(var_dir: Path, *, worker: bool = False, env: dict[str, str] | None = None, timeout: float = 60) -> LiveServer:
    """Start `lorapedia serve` on a free loopback port and wait until /healthz answers."""
    port = free_port()
    var_dir.mkdir(parents=True, exist_ok=True)
    log_path = var_dir / f"server-{port}.log"
    process_env = {**os.environ, "LORAPEDIA_VAR_DIR": str(var_dir), "LORAPEDIA_LOG_LEVEL": "warning", **(env or {})}
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if not worker:
        command.append("--no-worker")
    log_file = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=process_env, stdout=log_file, stderr=subprocess.STDOUT)
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, var_dir=var_dir, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not answer /healthz within {timeout}s:\n{server.log()}")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers on demand (`server_factory(worker=True, env={...})`); all are stopped afterwards."""
    servers: list[LiveServer] = []

    def factory(*, worker: bool = False, env: dict[str, str] | None = None, var_dir: Path | None = None) -> LiveServer:
        server = start_server(var_dir or tmp_path / "var", worker=worker, env=env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of one read-only server shared by the session's page tests (no worker)."""
    server = start_server(tmp_path_factory.mktemp("live") / "var")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, headless."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the item so fixtures can see whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(browser, request):
    """A fresh browser page; a screenshot is kept in test-artifacts/ when the test fails."""
    # bypass_csp: Playwright's string predicates (wait_for_function) run through eval, which the site's
    # Content-Security-Policy refuses; tests/web/test_security_browser.py drives pages under the real policy
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    new_page = context.new_page()
    new_page.set_default_timeout(15_000)
    yield new_page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        safe_name = "".join(char if char.isalnum() else "_" for char in request.node.nodeid)[-120:]
        new_page.screenshot(path=str(ARTIFACTS / f"{safe_name}.png"), full_page=True)
    context.close()


def serious_accessibility_violations(page) -> list[dict]:
    """Run the vendored axe-core on the current page; return serious and critical violations."""
    page.add_script_tag(path=str(PROJECT_ROOT / "static" / "vendor" / "axe-core" / "axe.min.js"))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": violation["id"], "impact": violation["impact"], "nodes": [node["target"] for node in violation["nodes"]][:5]}
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]

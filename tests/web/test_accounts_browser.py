"""In Chromium with accounts on: sign in, start a job, see it; a second user can see it once shared but cannot cancel or download it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from app.settings import PROJECT_ROOT
from tests.jobs.test_end_to_end import FAST_ENV

pytestmark = pytest.mark.browser
PASSWORDS = {"ada": "ada's long password", "bob": "bob's long password"}


def add_user(var_dir, name: str) -> None:
    """`lorapedia user add NAME`, the password on stdin, as an operator scripts it."""
    result = subprocess.run([sys.executable, "-m", "app.cli", "user", "add", name], input=PASSWORDS[name] + "\n", text=True,
                            capture_output=True, cwd=PROJECT_ROOT, env={**os.environ, "LORAPEDIA_VAR_DIR": str(var_dir)}, timeout=120)
    assert result.returncode == 0 and f"created account {name}" in result.stdout, result.stderr


def sign_in(page, base_url: str, name: str, start: str) -> None:
    page.goto(base_url + start)
    page.get_by_role("link", name="sign in").first.click()
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(start.split("?")[0])))


def start_job(page, base_url: str, steps: int) -> int:
    page.goto(f"{base_url}/jobs/new?max_steps={steps}&learning_rate=0.01")
    page.select_option("#f-dataset", "addition")
    page.get_by_role("button", name="Start the job").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def wait_status(page, status: str, timeout: float = 90_000) -> None:
    page.wait_for_function(f"document.getElementById('job-status').textContent.trim().startsWith('{status}')", timeout=timeout)


def test_a_signed_in_user_starts_a_job_and_another_cannot_cancel_or_download_it(browser, server_factory, tmp_path):
    var_dir = tmp_path / "var"
    for name in PASSWORDS:
        add_user(var_dir, name)
    server = server_factory(worker=True, env={**FAST_ENV, "LORAPEDIA_ACCOUNTS": "on"}, var_dir=var_dir)
    # bypass_csp as the shared page fixture does: Playwright's string waits evaluate code, which the CSP forbids
    ada = browser.new_context(bypass_csp=True).new_page()
    bob = browser.new_context(bypass_csp=True).new_page()
    for page in (ada, bob):
        page.set_default_timeout(20_000)

    sign_in(ada, server.url, "ada", "/jobs/new")
    assert ada.locator("#sign-in-notice").count() == 0 and ada.locator("#nav-account").inner_text() == "ada"
    short = start_job(ada, server.url, 5)
    wait_status(ada, "succeeded")
    assert ada.locator("a[href$='/adapter']").count() == 1
    ada.get_by_role("button", name="Share with everyone").click()
    ada.wait_for_url(re.compile(rf"/jobs/{short}$"))
    long = start_job(ada, server.url, 500)
    wait_status(ada, "running")
    ada.get_by_role("button", name="Share with everyone").click()

    sign_in(bob, server.url, "bob", "/jobs")
    assert bob.locator(f"#job-list a[href='/jobs/{long}']").count() == 1  # shared, so listed for bob
    bob.goto(f"{server.url}/jobs/{short}")
    assert bob.locator("a[href$='/adapter']").count() == 0 and "Only the job's owner" in bob.content()
    assert bob.request.get(f"{server.url}/api/jobs/{short}/adapter").status == 403
    assert ada.request.get(f"{server.url}/api/jobs/{short}/adapter").status == 200
    bob.goto(f"{server.url}/jobs/{long}")
    wait_status(bob, "running")
    assert bob.get_by_role("button", name="Cancel the job").count() == 0
    assert bob.request.post(f"{server.url}/jobs/{long}/cancel").status == 403
    assert bob.request.post(f"{server.url}/api/jobs/{long}/cancel").status == 403
    assert bob.request.get(f"{server.url}/api/jobs/{long}").json()["cancel_requested"] is False

    ada.goto(f"{server.url}/jobs/{long}")
    with ada.expect_response(lambda response: response.url.endswith(f"/jobs/{long}/cancel")) as cancelled:
        ada.get_by_role("button", name="Cancel the job").click()
    assert cancelled.value.status == 200, cancelled.value.text()
    wait_status(ada, "cancelled", timeout=60_000)  # the live block that says so also holds the retry form
    ada.context.close()
    bob.context.close()

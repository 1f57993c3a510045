"""In Chromium: a form on another site cannot post here; the site's own pages run under its CSP without violations."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

EVIL_ORIGIN = "http://evil.example"


@pytest.fixture
def strict_page(browser):
    """A page under the site's real Content-Security-Policy (the shared `page` fixture bypasses it)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_a_cross_site_form_post_is_refused_and_the_sites_own_form_works(strict_page, server_factory):
    page = strict_page
    server = server_factory()
    evil_page = (
        f'<form id="f" method="post" action="{server.url}/jobs/new">'
        '<input name="model" value="tiny-llama"><input name="dataset" value="addition"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(f"{EVIL_ORIGIN}/**", lambda route: route.fulfill(body=evil_page, content_type="text/html"))
    page.goto(f"{EVIL_ORIGIN}/")
    page.wait_for_url(f"{server.url}/jobs/new")
    assert "came from another" in page.locator("main").inner_text()
    assert httpx.get(f"{server.url}/api/jobs").json() == []

    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(f"{server.url}/jobs/new")
    page.select_option("#f-dataset", "addition")
    page.get_by_role("button", name="Start the job").click()  # htmx posts it with the token header
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    assert len(httpx.get(f"{server.url}/api/jobs").json()) == 1
    page.goto(f"{server.url}/calculator?model=tiny-llama")
    page.fill("#f-r", "12")
    expect(page).to_have_url(re.compile(r"[?&]r=12"))  # htmx swapped the results and replaced the URL
    expect(page.locator("#calc-results")).to_contain_text("12")
    assert violations == []

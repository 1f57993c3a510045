"""In Chromium: changing r updates the count without a page load; the URL alone reproduces the view."""

from __future__ import annotations

import pytest

from tests.conftest import serious_accessibility_violations

pytestmark = pytest.mark.browser


def test_changing_r_updates_live_and_the_url_reproduces_it(page, live_server):
    page.goto(f"{live_server}/calculator?model=llama-3.1-8b&target_modules=q_proj,v_proj&r=8")
    count = page.locator("#trainable-params")
    assert count.inner_text() == "3,407,872"
    page.evaluate("window.__sameDocument = true")  # disappears if the browser loads a new page

    page.fill("#f-r", "64")
    page.wait_for_function("document.querySelector('#trainable-params').dataset.value === '27262976'")
    assert page.evaluate("window.__sameDocument") is True
    assert "r=64" in page.url

    shared = page.url
    other = page.context.new_page()
    other.goto(shared)
    assert other.locator("#trainable-params").inner_text() == "27,262,976"
    assert other.locator("#f-r").input_value() == "64"
    other.close()


def test_a_bad_value_shows_inline_and_recovers(page, live_server):
    page.goto(f"{live_server}/calculator?model=gpt2&r=8")
    page.fill("#f-r", "0")
    page.wait_for_selector("#err-r:has-text('at least 1')")
    assert page.get_attribute("#f-r", "aria-invalid") == "true"
    page.fill("#f-r", "2")
    page.wait_for_function("document.querySelector('#trainable-params') && document.querySelector('#trainable-params').dataset.value === '73728'")
    assert page.locator("#err-r").inner_text() == ""


def test_try_it_focuses_the_field(page, live_server):
    page.goto(f"{live_server}/calculator?focus=lora_alpha")
    assert page.evaluate("document.activeElement.id") == "f-lora_alpha"


def test_no_serious_accessibility_violations(page, live_server):
    page.goto(f"{live_server}/calculator?model=gpt2&r=8")
    assert serious_accessibility_violations(page) == []
    page.goto(f"{live_server}/explain")
    assert serious_accessibility_violations(page) == []

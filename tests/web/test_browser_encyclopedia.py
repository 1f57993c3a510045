"""The encyclopedia in a real browser: search, follow, anchors, math, accessibility."""

import pytest

from tests.conftest import serious_accessibility_violations

pytestmark = pytest.mark.browser


def test_search_rank_reach_r_and_follow_a_section_anchor(page, live_server):
    page.goto(live_server + "/")
    page.fill("#nav-q", "rank")
    page.press("#nav-q", "Enter")
    page.wait_for_url("**/search?q=rank")
    page.evaluate("window.__sameDocument = true")
    page.fill("#search-q", "")
    page.type("#search-q", "ran", delay=30)
    page.wait_for_function("() => document.querySelector('#search-results a[href=\"/params/r\"]') !== null")
    assert page.evaluate("window.__sameDocument") is True, "live results must not reload the page"
    page.click("#search-results a[href='/params/r']")
    page.wait_for_url("**/params/r")
    page.click("nav[aria-label='On this page'] a[href='#raising-it']")
    page.wait_for_url("**/params/r#raising-it")
    assert page.locator("#raising-it").is_visible()
    assert page.locator(".math .katex").count() > 0, "formulas should be rendered by KaTeX"
    assert page.locator("button.copy-link").first.is_visible(), "copy-link controls are shown when JavaScript runs"


def test_type_a_symptom_in_the_header_search_reach_its_guide_and_try_the_fix(page, live_server):
    page.goto(live_server + "/")
    page.type("#nav-q", "CUDA out of memory", delay=20)
    page.press("#nav-q", "Enter")
    page.wait_for_url("**/search?q=CUDA+out+of+memory")
    first = page.locator("#search-results ol.search-results > li > a").first
    assert first.get_attribute("href") == "/guides/out-of-memory"
    first.click()
    page.wait_for_url("**/guides/out-of-memory")
    page.get_by_role("link", name="Try it: checkpointing on").click()
    page.wait_for_url("**/calculator?*gradient_checkpointing=true*")
    checkbox = page.locator("#f-gradient_checkpointing")
    assert checkbox.is_checked(), "the guide's lever arrives applied"
    assert page.locator("#field-gradient_checkpointing.focused").count() == 1
    assert page.locator("#f-per_device_train_batch_size").input_value() == "4"


@pytest.mark.parametrize("path", ["/", "/params/r", "/search?q=rank", "/guides/choosing-r-and-alpha", "/guides/out-of-memory"])
def test_no_serious_accessibility_violations(page, live_server, path):
    page.goto(live_server + path)
    assert serious_accessibility_violations(page) == []


def test_dark_mode_and_phone_layout_render(browser, live_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    phone = context.new_page()
    phone.goto(live_server + "/params/lora_alpha")
    background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
    width = phone.evaluate("document.documentElement.scrollWidth")
    context.close()
    assert background == "rgb(15, 18, 22)"
    assert width <= 390, "the page must not scroll sideways on a phone"


def test_without_javascript_formulas_are_mathml_and_no_dead_buttons_show(browser, live_server):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server + "/params/lora_alpha")
    formula = page.locator(".math math").first
    box = formula.bounding_box()
    copy_buttons = page.locator("button.copy-link").count()
    visible_buttons = page.locator("button.copy-link:visible").count()
    context.close()
    assert box is not None and box["width"] > 5 and box["height"] > 5, "the browser draws the MathML itself"
    assert copy_buttons > 0 and visible_buttons == 0, "copy-link buttons need JavaScript, so they stay hidden without it"

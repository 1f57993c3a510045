"""In Chromium: launch a tiny-llama job from the form and watch the chart draw points and the progress bar move."""

from __future__ import annotations

import re

import pytest

from tests.conftest import serious_accessibility_violations
from tests.jobs.test_end_to_end import FAST_ENV

pytestmark = pytest.mark.browser


def test_a_job_launched_from_the_form_draws_its_curve_and_moves_its_progress_bar(page, server_factory):
    server = server_factory(worker=True, env=FAST_ENV)  # `lorapedia serve` with its embedded worker
    page.goto(f"{server.url}/jobs/new?r=8&lora_alpha=16&learning_rate=0.01&max_steps=60&eval_steps=30")
    assert page.input_value("#f-r") == "8" and page.input_value("#f-max_steps") == "60"
    assert page.get_attribute("label[for=f-r] a", "href") == "/params/r"
    assert serious_accessibility_violations(page) == []
    page.select_option("#f-dataset", "addition")
    page.get_by_role("button", name="Start the job").click()  # not "Preview the data", the first submit button
    page.wait_for_url(re.compile(r"/jobs/\d+$"))

    chart_points = "() => Number(document.getElementById('loss-chart').dataset.points)"
    progress = "() => Number(document.getElementById('job-progress-bar').value)"
    page.wait_for_function(f"({chart_points})() >= 3", timeout=90_000)
    first_points, first_progress = page.evaluate(chart_points), page.evaluate(progress)
    page.wait_for_function(f"({chart_points})() >= {first_points + 5} && ({progress})() > {first_progress}", timeout=60_000)
    assert page.locator("#loss-chart canvas").count() == 1
    assert page.locator("#job-step").inner_text() != "0"
    assert serious_accessibility_violations(page) == []

    page.wait_for_function("document.getElementById('job-status').textContent.trim() === 'succeeded'", timeout=120_000)
    assert page.evaluate(chart_points) == 60
    # the table beside the chart (its text alternative) grew with it, one row per step, exact match included
    assert page.locator("#metric-rows tr").count() == 60 and page.locator("#metric-row-count").text_content() == "60"
    assert page.locator("#metric-rows tr").nth(29).locator("td").nth(3).text_content().endswith("%")  # inside closed <details>
    assert page.locator("a[href$='/adapter']").count() == 1


def test_the_job_list_keeps_itself_through_its_polls(page, server_factory):
    server = server_factory()
    import httpx

    job_id = httpx.post(f"{server.url}/api/jobs", json={"model": "tiny-llama", "dataset": "addition", "training": {"max_steps": 3}}).json()["id"]
    page.goto(f"{server.url}/jobs")
    page.evaluate("() => { window.listSwaps = 0; document.body.addEventListener('htmx:afterSettle', () => window.listSwaps++); }")
    page.wait_for_function("window.listSwaps >= 1", timeout=15_000)  # the list polls every 5 s
    assert page.locator("#job-list").count() == 1
    assert page.locator(f"#job-list a[href='/jobs/{job_id}']").count() == 1
    assert page.get_attribute("#job-list", "hx-get") == "/jobs"


def test_a_try_it_link_opens_the_job_form_on_its_field(page, live_server):
    page.set_viewport_size({"width": 1280, "height": 600})
    page.goto(f"{live_server}/jobs/new?focus=adam_epsilon")
    field = page.locator("#field-adam_epsilon")
    assert "focused" in field.get_attribute("class")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'f-adam_epsilon'")
    box, viewport = field.bounding_box(), page.viewport_size
    assert 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], box

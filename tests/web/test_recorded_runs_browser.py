"""A parameter page's recorded run in a real browser: the chart with its legend, machine and date, and "run it yourself"."""

import json

import pytest

from app.content.runs import load_runs
from app.settings import PROJECT_ROOT

pytestmark = pytest.mark.browser


def test_the_r_page_shows_its_recorded_sweep_and_run_it_yourself_opens_it_prefilled(page, live_server):
    recorded = load_runs(PROJECT_ROOT / "content" / "runs")["r"]
    page.goto(live_server + "/params/r")
    chart = page.locator("#recorded-chart")
    page.wait_for_function("() => document.querySelector('#recorded-chart canvas') !== null")
    assert chart.get_attribute("data-runs") == str(len(recorded.runs))
    legend = page.locator("#recorded-run .compare-legend li")
    assert legend.all_inner_texts() == [run.label for run in recorded.runs]
    caption = page.locator("#recorded-chart-figure figcaption").inner_text()
    assert recorded.machine.description in caption and recorded.recorded_on.isoformat() in caption
    assert page.locator("#recorded-run .compare-caption p").first.inner_text().startswith(
        tuple(run.label for run in recorded.runs))
    # switching the x-axis to tokens seen redraws the chart over the same runs
    page.select_option("#recorded-chart-figure .compare-x", "tokens_seen")
    assert chart.get_attribute("data-x") == "tokens_seen"

    page.click("#recorded-run a.run-yourself")
    page.wait_for_url("**/experiments/new?*field=r*")
    assert page.locator("#f-field").input_value() == "r"
    values = [page.locator(f"#f-value-{index}").input_value() for index in range(len(recorded.runs))]
    assert values == [json.dumps(value) for value in recorded.definition.values]
    base = recorded.definition.base
    assert page.locator("#f-model").input_value() == base["model"]
    assert page.locator("#f-dataset").input_value() == base["dataset"]
    assert float(page.locator("#f-learning_rate").input_value()) == base["training"]["learning_rate"]

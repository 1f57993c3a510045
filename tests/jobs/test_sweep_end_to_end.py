"""A sweep end to end on tiny-llama: one experiment, three jobs trained by a real worker, their curves overlaid."""

from __future__ import annotations

import json
import re
import time

import httpx

from tests.jobs.test_end_to_end import FAST_ENV

SWEEP = {
    "field": "r", "values": [2, 4, 8],
    "base": {"model": "tiny-llama", "dataset": "addition", "lora": {"lora_alpha": 16, "target_modules": "all-linear"},
             "training": {"max_steps": 6, "learning_rate": 0.01, "warmup_steps": 0, "per_device_train_batch_size": 4,
                          "eval_steps": 3}},
}


def test_a_three_value_sweep_trains_three_jobs_and_overlays_them(server_factory, worker_factory):
    server = server_factory(env=FAST_ENV)
    worker_factory(server.var_dir, FAST_ENV)
    response = httpx.post(f"{server.url}/api/experiments", json=SWEEP, timeout=10)
    assert response.status_code == 201, response.text
    experiment = response.json()
    assert [job["config"]["lora"]["r"] for job in experiment["jobs"]] == [2, 4, 8]
    assert {job["experiment_id"] for job in experiment["jobs"]} == {experiment["id"]}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{server.url}/api/experiments/{experiment['id']}", timeout=10).json()["jobs"]
        if all(job["status"] not in ("queued", "running") for job in jobs):
            break
        time.sleep(0.5)
    assert [job["status"] for job in jobs] == ["succeeded"] * 3
    # more rank, more trainable parameters: the table's figures are the jobs' own
    assert jobs[0]["trainable_params"] < jobs[1]["trainable_params"] < jobs[2]["trainable_params"]

    page = httpx.get(f"{server.url}{experiment['url']}", timeout=10).text
    chart = json.loads(re.search(r'<script type="application/json" class="compare-data">(.*?)</script>', page, re.S).group(1))
    assert [run["label"] for run in chart] == ["r = 2", "r = 4", "r = 8"]
    assert all([point["step"] for point in run["points"]] == list(range(1, 7)) for run in chart)
    assert all(run["points"][-1]["eval_loss"] is not None and run["points"][-1]["tokens_seen"] > 0 for run in chart)
    assert len({run["colour"] for run in chart}) == 3
    diff = re.search(r'<table class="compare-diff">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    assert re.findall(r'<th scope="row">(?:<a [^>]*>)?(\w+)', diff) == ["r"]  # exactly the swept field differs
    assert "reached the lowest eval loss" in page
    # the definition link recreates the sweep in the form
    form = httpx.get(f"{server.url}{experiment['definition_url']}", timeout=10).text
    assert re.findall(r'name="value" value="([^"]*)"', form)[:3] == ["2", "4", "8"]
    assert 'value="0.01"' in form and '<option value="r" selected>' in form

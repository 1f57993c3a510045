"""Job pages without a browser: list, form (prefill, links, inline errors, redirect), detail, page stream."""

from __future__ import annotations

import json
from datetime import UTC, datetime
import re

import pytest

from app.jobs import queue
from app.jobs.tables import JobStatus, MetricPublic
from app.web.routers.jobs import curve_flags
from app.web.sse import JobFeed
from tests.jobs.sse_client import parse_events
from tests.web.test_jobs_api import SMALL_JOB, finished_job_with_metrics

HTMX = {"HX-Request": "true"}


def test_the_form_has_every_field_linked_to_its_page_and_prefilled_from_the_query(app, client):
    html = client.get("/jobs/new?r=16&learning_rate=0.0005&target_modules=q_proj,v_proj").text
    for name in app.state.library.params:
        if re.search(rf'name="{name}"', html):
            assert f'href="/params/{name}"' in html, name
    assert re.search(r'name="r" value="16"', html)
    assert re.search(r'name="learning_rate" value="0.0005"', html)
    assert 'value="q_proj,v_proj"' in html
    for name in ("lora_dropout", "use_rslora", "per_device_train_batch_size", "gradient_accumulation_steps", "packing", "eval_steps"):
        assert f'name="{name}"' in html, name


def test_a_valid_form_queues_the_job_and_redirects_to_its_page(client):
    form = {"model": "tiny-llama", "dataset": "addition", "r": "4", "max_steps": "3", "use_dora": "false"}
    response = client.post("/jobs/new", data=form, follow_redirects=False)
    assert response.status_code == 303
    job = client.get("/api/jobs").json()[0]
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert (job["config"]["lora"]["r"], job["config"]["training"]["max_steps"]) == (4, 3)
    assert client.post("/jobs/new", data=form, headers=HTMX).headers["HX-Redirect"].startswith("/jobs/")


def test_a_bad_form_comes_back_with_a_message_at_each_bad_field_and_the_values_kept(client):
    form = {"model": "tiny-llama", "dataset": "addition", "r": "4", "max_steps": "100000", "lora_dropout": "1.0"}
    response = client.post("/jobs/new", data=form)
    assert response.status_code == 422
    assert "field-error" in response.text and "<html" in response.text and 'value="100000"' in response.text
    partial = client.post("/jobs/new", data={**form, "max_steps": "abc"}, headers=HTMX)
    assert partial.status_code == 422 and "<html" not in partial.text and 'id="job-form"' in partial.text
    assert "must be a whole number" in partial.text
    assert client.get("/api/jobs").json() == []


def test_the_list_shows_each_job(app, client):
    job_id = finished_job_with_metrics(app, client, steps=3)
    html = client.get("/jobs").text
    assert f'href="/jobs/{job_id}"' in html and "succeeded" in html and "4.0000" in html


def test_a_finished_job_page_embeds_its_whole_curve_and_opens_no_stream(app, client):
    job_id = finished_job_with_metrics(app, client, steps=4)
    html = client.get(f"/jobs/{job_id}").text
    assert "sse-connect" not in html
    points = json.loads(re.search(r'<script type="application/json" id="job-metrics">(.*?)</script>', html, re.S).group(1))
    assert [point["step"] for point in points] == [1, 2, 3, 4]
    assert 'data-points="4"' in html and "Predicted" in html and "Measured" in html


def test_a_running_job_page_streams_from_the_step_it_already_shows(app, client):
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    queue.claim_next_job(app.state.engine, "w", 30)
    queue.append_metric(app.state.engine, job_id, {"step": 1, "train_loss": 3.0, "elapsed_seconds": 0.5})
    html = client.get(f"/jobs/{job_id}").text
    assert f'sse-connect="/jobs/{job_id}/events?after=1"' in html
    assert 'sse-swap="progress"' in html and "Cancel the job" in html


def test_the_page_stream_sends_progress_and_results_html_for_htmx(app, client):
    job_id = finished_job_with_metrics(app, client, steps=3)
    with client.stream("GET", f"/jobs/{job_id}/events?after=2") as response:
        events = list(parse_events(response.iter_lines()))
    names = [event.event for event in events]
    assert names.count("metric") == 1 and "progress" in names and "results" in names and names[-1] == "done"
    progress = next(event.data for event in events if event.event == "progress")
    assert 'id="job-progress-bar"' in progress and 'value="3"' in progress


@pytest.mark.timeout(60)  # a stream that never sends the flag waits on the running job: fail instead of hanging
def test_the_curve_flags_update_in_the_page_stream_when_a_running_job_starts_diverging(app, client):
    engine = app.state.engine
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    queue.claim_next_job(engine, "w", 30)
    queue.record_start(engine, job_id, "w", {"total_steps": 10, "device": "cpu float32"})
    for step in range(1, 6):
        queue.append_metric(engine, job_id, {"step": step, "train_loss": 4.0 - 0.2 * step, "learning_rate": 1e-3})
    page = client.get(f"/jobs/{job_id}").text
    assert 'sse-swap="curve_flags"' in page and "diverged" not in page and "exploded" not in page
    blocks: list[str] = []
    with client.stream("GET", f"/jobs/{job_id}/events?after=5") as response:
        for event in parse_events(response.iter_lines()):
            if event.event != "curve_flags":
                continue
            blocks.append(event.data)
            if len(blocks) == 1:  # the healthy curve so far: no flag; then the loss explodes
                for step, loss in ((6, 9.0), (7, 25.0), (8, 60.0)):
                    queue.append_metric(engine, job_id, {"step": step, "train_loss": loss, "learning_rate": 1e-3})
            elif "exploded" in event.data:
                break
    assert "curve-flags" not in blocks[0]
    assert "The train loss exploded" in blocks[-1] and 'href="/guides/loss-nan-or-exploding"' in blocks[-1]


def test_cancel_from_the_page_works_without_javascript(client):
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    response = client.post(f"/jobs/{job_id}/cancel", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/jobs/{job_id}"
    assert client.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"


def test_preview_shows_pasted_rows_without_queueing(client):
    pasted = '{"prompt": "What is r?", "response": "The rank."}\n{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}'
    response = client.post("/jobs/new", data={"model": "tiny-llama", "dataset": "addition", "dataset_jsonl": pasted, "action": "preview"})
    assert response.status_code == 200
    assert "2 training rows from your pasted JSONL" in response.text
    assert "<td>What is r?</td><td>The rank.</td>" in response.text
    assert "What is r?" in response.text.split('id="f-dataset_jsonl"')[1], "the pasted text stays in the form"
    assert client.get("/api/jobs").json() == []


def test_preview_of_a_catalogue_dataset_and_of_a_bad_line(client):
    catalogue = client.post("/jobs/new", data={"dataset": "addition", "action": "preview"}, headers=HTMX)
    assert catalogue.status_code == 200 and "<html" not in catalogue.text
    assert "training rows from" in catalogue.text and "held out for evaluation" in catalogue.text
    bad = client.post("/jobs/new", data={"dataset": "addition", "dataset_jsonl": '{"prompt": "x", "response": "y"}\n{oops', "action": "preview"})
    assert bad.status_code == 422
    assert "line 2" in bad.text and "Data preview" not in bad.text
    assert client.get("/api/jobs").json() == []


def test_the_list_poll_answers_with_the_element_it_swaps(app, client):
    """htmx swaps #job-list (outerHTML) with the poll's answer, so the answer must be that element, not its contents."""
    job_id = finished_job_with_metrics(app, client, steps=2)
    full = client.get("/jobs").text
    polled = client.get("/jobs", headers=HTMX).text
    assert "<html" not in polled
    assert polled.lstrip().startswith('<div id="job-list"'), polled[:200]
    for html in (full, polled):
        assert html.count('id="job-list"') == 1
        element = re.search(r'<div id="job-list"[^>]*>', html).group(0)
        assert 'hx-get="/jobs"' in element and 'hx-swap="outerHTML"' in element and "hx-select" not in element
    assert f'href="/jobs/{job_id}"' in polled
    empty = client.get("/jobs", headers=HTMX).text  # still polls itself after any number of rounds
    assert empty.lstrip().startswith('<div id="job-list"')


def test_a_try_it_link_focuses_its_field_on_the_job_form(client):
    html = client.get("/jobs/new?focus=warmup_steps").text
    field = re.search(r'<div class="form-field([^"]*)" id="field-warmup_steps">(.*?)</div>', html, re.S)
    assert field and "focused" in field.group(1)
    assert re.search(r'<input type="text" id="f-warmup_steps"[^>]*autofocus', field.group(2))
    assert html.count(" focused") == 1 and html.count("autofocus") == 1
    assert '<script src="/static/js/jobs.js"' in html  # scrolls the focused field into view
    for name, tag in (("packing", "input"), ("lr_scheduler_type", "select"), ("model", "select"), ("dataset_jsonl", "textarea")):
        html = client.get(f"/jobs/new?focus={name}").text
        assert re.search(rf'<{tag}[^>]*id="f-{name}"[^>]*autofocus', html), name
    for slug in ("no_such_field", "", "<script>"):
        html = client.get("/jobs/new", params={"focus": slug}).text
        assert " focused" not in html and "autofocus" not in html, slug


def test_parameter_pages_try_it_links_land_on_a_focused_job_field(app, client):
    from app.content.links import try_it_url

    links = [try_it_url(page.slug, page.meta.kind) for page in app.state.library.params.values()]
    job_links = [link for link in links if link and link.startswith("/jobs/new")]
    assert job_links
    for link in job_links:
        assert "autofocus" in client.get(link).text, link


def test_a_config_the_calculator_cannot_compute_comes_back_inline(client):
    form = {"model": "tiny-llama", "dataset": "addition", "r": "4", "max_steps": "3", "target_modules": "nope"}
    response = client.post("/jobs/new", data=form, headers=HTMX)
    assert response.status_code == 422
    error = re.search(r'id="f-target_modules".*?<span id="err-target_modules" class="field-error" role="alert">(.*?)</span>', response.text, re.S)
    assert error and "match no module" in error.group(1)
    assert client.get("/api/jobs").json() == []


def test_out_of_range_job_pages_are_404_not_500(client):
    for path in ("/jobs/99999999999999999999", f"/jobs/{2**63}", "/jobs/0", "/jobs/99999999999999999999/events"):
        response = client.get(path)
        assert response.status_code == 404, path
    assert client.post("/jobs/99999999999999999999/cancel").status_code == 404


def test_the_job_page_says_what_the_prediction_assumed(app, client):
    job_id = client.post("/api/jobs", json={**SMALL_JOB, "training": {"max_steps": 5, "optim": "rmsprop"}}).json()["id"]
    html = client.get(f"/jobs/{job_id}").text
    note = re.search(r'<p class="muted" id="prediction-assumptions">(.*?)</p>', html, re.S).group(1)
    assert "fp32" in note and "rmsprop optimizer" in note  # the calculator models rmsprop's one state tensor
    queue.claim_next_job(app.state.engine, "w", 30)
    queue.record_start(app.state.engine, job_id, "w", {"device": "cuda (H200) bfloat16"})
    html = client.get(f"/jobs/{job_id}").text
    assert "trained in cuda (H200) bfloat16, not fp32" in html


def test_the_calculators_train_link_prefills_a_job_form_that_queues_the_same_config(client):
    import html as html_module

    calculator = client.get("/calculator", params={
        "model": "tiny-llama", "r": "8", "target_modules": "q_proj v_proj", "rank_pattern": "q_proj=4",
        "per_device_train_batch_size": "2", "gradient_checkpointing": "true", "learning_rate": "0.001"}).text
    link = html_module.unescape(re.search(r'href="(/jobs/new\?[^"]+)"', calculator).group(1))
    form_page = client.get(link).text
    values = dict(re.findall(r'name="([a-z_0-9]+)"[^>]*value="([^"]*)"', form_page))
    assert values["per_device_train_batch_size"] == "2" and values["learning_rate"] == "0.001"
    assert re.search(r'name="gradient_checkpointing"[^>]*checked', form_page)
    carried = ("r", "target_modules", "rank_pattern", "per_device_train_batch_size", "learning_rate")
    submitted = {name: values[name] for name in carried} | {
        "model": "tiny-llama", "dataset": "addition", "max_steps": "2", "gradient_checkpointing": "true"}
    response = client.post("/jobs/new", data=submitted, follow_redirects=False)
    assert response.status_code == 303, re.findall(r'class="field-error"[^>]*>([^<]*)', response.text)
    job = client.get("/api/jobs").json()[0]
    assert job["config"]["lora"]["rank_pattern"] == {"q_proj": 4}
    assert job["config"]["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert job["config"]["training"]["per_device_train_batch_size"] == 2


def test_the_exact_match_score_shows_per_evaluation_and_at_the_end(app, client):
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    engine = app.state.engine
    queue.claim_next_job(engine, "test-worker", 30)
    queue.append_metric(engine, job_id, {"step": 1, "train_loss": 3.0, "eval_loss": 2.5, "exact_match": 0.12})
    queue.append_metric(engine, job_id, {"step": 2, "train_loss": 2.0, "eval_loss": 1.5, "exact_match": 0.64})
    queue.finish_job(engine, job_id, "test-worker", JobStatus.succeeded, {"final_eval_loss": 1.5, "final_exact_match": 0.64})
    assert client.get(f"/api/jobs/{job_id}").json()["final_exact_match"] == 0.64
    html = client.get(f"/jobs/{job_id}").text
    assert '<th scope="col" class="num" data-key="exact_match">exact match</th>' in html
    assert '<td class="num">12%</td>' in html and '<td class="num">64%</td>' in html
    assert "exact match on held-out answers 64%" in html
    assert "64% of held-out answers (step 2)" in html
    # tiny-llama counts bytes: the style rows need more than the default length.
    style = {**SMALL_JOB, "dataset": "telegram-style", "training": {**SMALL_JOB["training"], "max_seq_length": 256}}
    style_job = client.post("/api/jobs", json=style).json()["id"]
    assert "exact match" not in client.get(f"/jobs/{style_job}").text, "only a task scored by exact match has the column"
    queued = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    assert 'data-key="exact_match"' in client.get(f"/jobs/{queued}").text, "a live page has the column before its first evaluation"


def test_a_feed_hands_every_subscriber_at_a_step_the_same_curve_and_its_flags_are_computed_once():
    feed = JobFeed(hub=None, job_id=1, poll_seconds=0.1)
    for step, loss in ((1, 3.0), (2, 2.8), (3, 9.0), (4, 30.0)):
        feed.metrics.append(MetricPublic(step=step, train_loss=loss, recorded_at=datetime.now(UTC)))
        feed.steps.append(step)
    first, second = feed.metrics_through(4), feed.metrics_through(4)
    assert first is second and [row.step for row in first] == [1, 2, 3, 4]
    assert curve_flags(first) is curve_flags(second) and curve_flags(first)[0].kind == "divergence"
    earlier = feed.metrics_through(2)
    assert [row.step for row in earlier] == [1, 2] and curve_flags(earlier) == []

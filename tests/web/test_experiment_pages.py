"""An experiment page without a browser: its comparison block, refreshed while jobs run, flags a run that starts diverging."""

from __future__ import annotations

from app.jobs import queue
from tests.web.test_jobs_api import SMALL_JOB

HTMX = {"HX-Request": "true"}


def test_the_refreshed_comparison_flags_a_running_job_that_starts_diverging(app, client):
    engine = app.state.engine
    created = client.post("/api/experiments", json={"field": "r", "values": [4, 8], "base": SMALL_JOB}).json()
    first = created["jobs"][0]["id"]
    assert queue.claim_next_job(engine, "w", 30) == first
    queue.record_start(engine, first, "w", {"total_steps": 10, "device": "cpu float32"})
    for step in range(1, 6):
        queue.append_metric(engine, first, {"step": step, "train_loss": 4.0 - 0.2 * step, "learning_rate": 1e-3})
    page = client.get(created["url"]).text
    assert 'hx-trigger="every 3s"' in page and "exploded" not in page

    for step, loss in ((6, 9.0), (7, 25.0), (8, 60.0)):
        queue.append_metric(engine, first, {"step": step, "train_loss": loss, "learning_rate": 1e-3})
    refreshed = client.get(created["url"], headers=HTMX).text
    assert "<html" not in refreshed and 'id="comparison"' in refreshed
    assert "<strong>r = 4:</strong> The train loss exploded" in refreshed
    assert 'href="/guides/loss-nan-or-exploding"' in refreshed

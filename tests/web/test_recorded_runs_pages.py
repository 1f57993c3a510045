"""Every recorded sweep: what `lorapedia record` would run today, trained in the precision it names, shown on its page."""

from __future__ import annotations

import pytest

from app.content.runs import load_runs
from app.settings import PROJECT_ROOT
from app.spec.sweeps import RECORDINGS, recorded_definition
from app.spec.training import JOB_DEFAULTS

RECORDED = load_runs(PROJECT_ROOT / "content" / "runs")


@pytest.mark.parametrize("field", list(RECORDINGS))
def test_each_recorded_sweep_is_what_record_runs_now_at_the_default_job_shape(field):
    recorded = RECORDED[field]
    definition, _ = recorded_definition(field)
    # "run it yourself" opens this definition: it must be the jobs that were recorded, at the job form's defaults
    assert recorded.definition == definition
    training = recorded.definition.base["training"]
    shape = {name: JOB_DEFAULTS[name] for name in ("max_steps", "per_device_train_batch_size", "max_seq_length", "eval_steps")}
    assert {name: training[name] for name in shape} == shape
    assert all(run.status == "succeeded" for run in recorded.runs)
    assert [len(run.metrics) for run in recorded.runs] == [JOB_DEFAULTS["max_steps"]] * len(recorded.runs)
    # the machine line names the precision every run reports, in the same words
    assert {run.device for run in recorded.runs} == {recorded.machine.precision}


@pytest.mark.parametrize("field", list(RECORDINGS))
def test_each_parameter_page_shows_its_recorded_chart_with_machine_and_date(client, field):
    recorded = RECORDED[field]
    html = client.get(f"/params/{field}").text
    section = html[html.index('<section id="recorded-run"'):]
    section = section[:section.index("</section>")]
    legend = section[section.index('<ul class="compare-legend"'):]
    legend = legend[:legend.index("</ul>")]
    assert 'id="recorded-chart"' in section and legend.count("<li>") == len(recorded.runs)
    assert recorded.machine.description in section and recorded.machine.precision in section
    assert recorded.recorded_on.isoformat() in section
    assert f"{JOB_DEFAULTS['max_steps']} steps per value" in section
    for run in recorded.runs:
        assert run.label in section

"""schemathesis over the OpenAPI schema, anonymous and with a user's bearer token: no 5xx, documented codes, bodies and types only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from sqlmodel import Session

from app.accounts import create_account, create_token
from app.jobs.db import init_db
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
# Bounded so both runs over every operation finish in about two minutes on two shared cores
MAX_EXAMPLES = 60
SMALL_JOB = {"model": "tiny-llama", "dataset": "addition", "lora": {"r": 4}, "training": {"max_steps": 5}}
# Valid requests sent before and after the generated ones, so the answers of existing things are checked too
KNOWN_BODIES = {
    ("POST", "/api/jobs"): [SMALL_JOB, SMALL_JOB, SMALL_JOB, SMALL_JOB, SMALL_JOB],
    ("POST", "/api/calc"): [{"model": "tiny-llama", "lora": {"r": 8}}],
    ("POST", "/api/explain"): [{"r": 8, "lora_alpha": 16}],
    ("POST", "/api/experiments"): [{"field": "r", "values": [4, 8], "base": SMALL_JOB}],
    ("POST", "/api/jobs/{job_id}/share"): [{"shared": True}],
    ("POST", "/api/tokens"): [{"name": "ci"}],
}


@dataclass
class Visitor:
    """An app with accounts on (no worker runs, so created jobs stay queued) and the headers one visitor sends."""

    schema: Any
    headers: dict[str, str]
    # path parameters that name things that exist, swapped into half of the generated requests
    known: dict[str, Any] = field(default_factory=dict)
    owner_headers: dict[str, str] = field(default_factory=dict)

    def cancel_queued_jobs(self) -> None:
        """Cancel every job still queued, through the API."""
        for job in self.send("GET", "/api/jobs", headers=self.owner_headers).json():
            if job["status"] == "queued":
                self.send("POST", "/api/jobs/{job_id}/cancel", path_parameters={"job_id": job["id"]}, headers=self.owner_headers)

    def send(self, method: str, path: str, body: Any = None, path_parameters: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None):
        """One valid request through schemathesis, checked like the generated ones."""
        operation = self.schema[path][method]
        case = operation.Case(body=body, path_parameters=path_parameters or {}) if body is not None else \
            operation.Case(path_parameters=path_parameters or {})
        return case.call_and_validate(headers=headers if headers is not None else self.headers, checks=CHECKS)


@pytest.fixture(scope="module", params=["anonymous", "signed-in"])
def visitor(request, tmp_path_factory) -> Iterator[Visitor]:
    var_dir: Path = tmp_path_factory.mktemp(request.param) / "var"
    app = create_app(Settings(var_dir=var_dir, poll_seconds=0.05, accounts=True))
    init_db(app.state.engine)
    with Session(app.state.engine) as session:
        account = create_account(session, "ada", "a long enough password")
        token, secret = create_token(session, account, "schemathesis")
        token_id = token.id
    ada = {"Authorization": f"Bearer {secret}"}
    visitor = Visitor(schemathesis.openapi.from_asgi("/openapi.json", app), ada if request.param == "signed-in" else {}, owner_headers=ada)
    shared = visitor.send("POST", "/api/jobs", SMALL_JOB, headers=ada).json()["id"]
    visitor.send("POST", "/api/jobs/{job_id}/share", {"shared": True}, {"job_id": shared}, headers=ada)
    cancelled = visitor.send("POST", "/api/jobs", SMALL_JOB, headers=ada).json()["id"]
    visitor.send("POST", "/api/jobs/{job_id}/cancel", path_parameters={"job_id": cancelled}, headers=ada)
    visitor.send("POST", "/api/jobs/{job_id}/share", {"shared": True}, {"job_id": cancelled}, headers=ada)
    experiment = visitor.send("POST", "/api/experiments", KNOWN_BODIES[("POST", "/api/experiments")][0], headers=ada).json()["id"]
    slug = visitor.send("GET", "/api/params").json()[0]["slug"]
    visitor.known = {"job_id": [shared, cancelled], "experiment_id": [experiment], "model_id": ["tiny-llama", "smollm2-135m-instruct"],
                     "slug": [slug], "token_id": [token_id]}
    yield visitor
    asgi.shutdown_lifespans()


def test_every_operation_answers_as_documented(visitor: Visitor):
    failures = []
    operations = [result.ok() for result in visitor.schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        known = dict(visitor.known)
        if operation.path.endswith("/events"):
            visitor.cancel_queued_jobs()  # a queued job's stream lasts until the job ends
        known_parameters = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in known.items()})

        @given(case=operation.as_strategy(), swap=st.booleans(), known=known_parameters)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_as_documented(case, swap: bool, known: dict[str, Any]) -> None:
            if swap and case.path_parameters:
                case.path_parameters = {name: known.get(name, value) for name, value in case.path_parameters.items()}
            case.call_and_validate(headers=visitor.headers, checks=CHECKS)

        try:
            for body in KNOWN_BODIES.get((operation.method.upper(), operation.path), []):
                parameters = {name: known[name][0] for name in re.findall(r"\{(\w+)\}", operation.path)}
                visitor.send(operation.method.upper(), operation.path, body, parameters)
            answers_as_documented()
        except Exception as failure:  # noqa: BLE001 - each operation's failures are gathered, then reported together
            failures.append(f"{operation.label}: {failure}")
    assert not failures, "\n\n".join(failures)

"""CSRF refusal, security headers, HEAD, canonical URLs and the work budget."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.web.security import CSRF_COOKIE

JOB_FORM = {"model": "tiny-llama", "dataset": "addition", "max_steps": "2"}


@pytest.fixture
def bare(app):
    """A client with no cookie and no token: curl, or a page on another site."""
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.testserver"},
    {"Origin": "null"},
])
@pytest.mark.parametrize(("path", "kwargs"), [
    ("/jobs/new", {"data": JOB_FORM}),
    ("/api/jobs", {"json": {"model": "tiny-llama", "dataset": "addition"}}),
    ("/explain", {"data": {"adapter_config": "{}"}}),
])
def test_a_cross_site_state_change_is_refused_with_403(client, headers, path, kwargs):
    response = client.post(path, headers=headers, **kwargs)
    assert response.status_code == 403
    assert "another" in response.text and "own pages" in response.text
    assert client.get("/api/jobs").json() == []


def test_a_cross_site_cancel_is_refused_and_a_same_origin_one_works(client):
    job_id = client.post("/api/jobs", json={"model": "tiny-llama", "dataset": "addition"}).json()["id"]
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert client.post(f"/jobs/{job_id}/cancel", headers=evil).status_code == 403
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=evil).status_code == 403
    assert client.get(f"/api/jobs/{job_id}").json()["cancel_requested"] is False
    same = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/jobs/{job_id}/cancel", headers=same, follow_redirects=False).status_code == 303


def test_a_form_post_without_the_token_is_refused_and_the_token_from_a_page_works(bare):
    refused = bare.post("/jobs/new", data=JOB_FORM)
    assert refused.status_code == 403 and "security token" in refused.text
    page = bare.get("/jobs/new")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert bare.cookies.get(CSRF_COOKIE) == token  # set by the first page this client saw (the 403's)
    assert "HttpOnly" in refused.headers["set-cookie"] and "SameSite=Lax" in refused.headers["set-cookie"]
    wrong = bare.post("/jobs/new", data={**JOB_FORM, "csrf_token": "x" * 43}, follow_redirects=False)
    assert wrong.status_code == 403
    accepted = bare.post("/jobs/new", data={**JOB_FORM, "csrf_token": token}, follow_redirects=False)
    assert accepted.status_code == 303
    uploaded = bare.post("/explain", data={"csrf_token": token}, files={"adapter_file": ("a.json", b'{"r": 8}', "application/json")})
    assert uploaded.status_code == 200


def test_json_api_clients_without_cookies_need_no_token(bare):
    created = bare.post("/api/jobs", json={"model": "tiny-llama", "dataset": "addition"})
    assert created.status_code == 201
    assert bare.post(f"/api/jobs/{created.json()['id']}/cancel").status_code == 202
    assert bare.post("/api/calc", json={"model": "tiny-llama"}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/params/r", "/calculator", "/api/params", "/static/css/site.css", "/docs"])
def test_every_answer_has_the_security_headers_and_head_works_like_get(client, path):
    got = client.get(path)
    head = client.head(path)
    assert got.status_code == head.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
    for response in (got, head):
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"


def test_no_template_has_inline_script_or_event_handler_attributes():
    from app.settings import PROJECT_ROOT

    for template in (PROJECT_ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        for chunk in text.split("<script")[1:]:
            opening = chunk.split(">", 1)[0]
            assert "src=" in opening or 'type="application/json"' in opening, template
        assert " onclick=" not in text and " onload=" not in text and "hx-on" not in text, template


def test_canonical_links_never_follow_the_host_header(client):
    html = client.get("/params/r", headers={"Host": "evil.example"}).text
    assert "evil.example" not in html
    assert '<link rel="canonical" href="/params/r">' in html


def test_work_over_the_budget_is_a_503_with_retry_after(settings):
    with TestClient(create_app(settings.model_copy(update={"work_seconds": 0.001}))) as slow:
        body = {"model": "llama-3.1-70b", "lora": {"target_modules": r".*\.(q|k|v|o)_proj", "exclude_modules": r".*\.1\d\..*"}}
        response = slow.post("/api/calc", json=body)
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
        assert "budget" in response.json()["detail"]
        page = slow.get("/calculator", params={"model": "llama-3.1-70b", "target_modules": r".*\.(q|v)_proj"})
        assert page.status_code == 503 and "budget" in page.text


def test_openapi_documents_the_limits_and_the_errors(client):
    schema = client.get("/openapi.json").json()
    lora = schema["components"]["schemas"]["LoraSpec"]["properties"]
    lists = {name: next(option for option in lora[name]["anyOf"] if option.get("type") == "array") for name in ("target_modules", "modules_to_save")}
    assert lists["target_modules"]["maxItems"] == 2048 and lists["target_modules"]["items"]["maxLength"] == 256
    assert lists["modules_to_save"]["maxItems"] == 64
    assert lora["rank_pattern"]["maxProperties"] == 2048
    calc = schema["paths"]["/api/calc"]["post"]["responses"]
    assert {"413", "422", "503"} <= set(calc) and "Retry-After" in calc["503"]["headers"]
    assert "404" in schema["paths"]["/api/jobs/{job_id}"]["get"]["responses"]
    training = schema["components"]["schemas"]["CalcTrainingSpec"]["properties"]["learning_rate"]
    assert json.dumps(training).count("exclusiveMinimum") == 1

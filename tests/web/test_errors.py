"""Error handling shared by every router: body size limit (413), JSON-safe 422s."""

from app.web.errors import validation_detail


def test_validation_detail_is_json_safe_for_nan_and_bytes():
    detail = validation_detail([{"loc": ("body", "lora", "lora_dropout"), "msg": "bad", "type": "x", "input": float("nan")}])
    assert detail == [{"loc": ["body", "lora", "lora_dropout"], "msg": "bad", "type": "x"}]


def test_body_over_the_limit_gets_413_naming_the_body(client, settings):
    response = client.post("/api/params", content=b"x" * (settings.max_body_bytes + 1), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert "limit" in response.json()["detail"][0]["msg"]


def test_chunked_body_over_the_limit_gets_413_too(client, settings):
    def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    response = client.post("/api/calc", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"][0]["type"] == "body_too_large"


def test_body_under_the_limit_reaches_the_app_intact(client):
    response = client.post("/api/calc", json={"model": "tiny-llama", "lora": {"r": 4, "target_modules": ["q_proj"]}})
    assert response.status_code == 200
    assert response.json()["trainable_params"] == 2 * 4 * (64 + 64)


def test_an_unreadable_body_gets_422_naming_the_body(client):
    for body in (b'{"model": "\xff\xfe"}', b"[" * 5000 + b"]" * 5000):
        response = client.post("/api/calc", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, body[:20]
        assert response.json()["detail"][0]["loc"] == ["body"]


def test_a_page_route_with_a_bad_path_gets_an_html_page_naming_the_field(client):
    response = client.get("/jobs/abc")
    assert response.status_code == 422 and response.headers["content-type"].startswith("text/html")
    assert "<code>job_id</code>" in response.text and "<html" in response.text
    assert client.get("/api/jobs/abc").json()["detail"][0]["loc"] == ["path", "job_id"]


def test_a_form_body_over_the_limit_gets_a_page_and_an_htmx_form_gets_it_in_place_of_the_body(client, settings):
    form = {"dataset_jsonl": "x" * (settings.max_body_bytes + 1)}
    response = client.post("/jobs/new", data=form)
    assert response.status_code == 413 and "the limit is" in response.text and "<html" in response.text
    partial = client.post("/jobs/new", data=form, headers={"HX-Request": "true"})
    assert partial.status_code == 413 and partial.headers["HX-Retarget"] == "body"


def test_a_paste_just_over_the_dataset_limit_gets_the_inline_dataset_error_even_percent_encoded(client, settings):
    # '{' and '"' take 3 bytes each in a form body: the paste's own limit must speak before the body limit
    line = '{"prompt": "q", "response": "a"}\n'
    pasted = line * (settings.max_dataset_bytes // len(line) + 1)
    response = client.post("/jobs/new", data={"model": "tiny-llama", "dataset_jsonl": pasted})
    assert response.status_code == 422 and 'id="job-form"' in response.text
    assert "the limit is" not in response.text and f"at most {settings.max_dataset_bytes:,} bytes are allowed" in response.text


def test_settings_refuse_a_body_limit_that_an_encoded_paste_would_hit_first():
    import pytest
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="3 x max_dataset_bytes"):
        Settings(max_dataset_bytes=2_000_000, max_body_bytes=4_000_000)

"""Error handling shared by every router: body size limit, JSON-safe 422s."""

from app.web.errors import validation_detail


def test_validation_detail_is_json_safe_for_nan_and_bytes():
    detail = validation_detail([{"loc": ("body", "lora", "lora_dropout"), "msg": "bad", "type": "x", "input": float("nan")}])
    assert detail == [{"loc": ["body", "lora", "lora_dropout"], "msg": "bad", "type": "x"}]


def test_body_over_the_limit_gets_422_naming_the_body(client, settings):
    response = client.post("/api/params", content=b"x" * (settings.max_body_bytes + 1), headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert "limit" in response.json()["detail"][0]["msg"]


def test_chunked_body_over_the_limit_gets_422_too(client, settings):
    def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    response = client.post("/api/calc", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 422
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

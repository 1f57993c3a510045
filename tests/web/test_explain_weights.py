"""/explain with adapter_model.safetensors: the form (no JavaScript: the file is uploaded) and the JSON API read its header."""

from __future__ import annotations

import json
import re
import struct

import pytest
import torch

from tests.calc.test_adapter_weights import saved_file
from tests.calc.test_adapter_file import TINY

# tiny-llama is a catalogue model: base_model_name_or_path names it, so the exact file is predicted too
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"v_proj": 2}, "use_dora": True}
CONFIG = {"peft_type": "LORA", "base_model_name_or_path": "tiny-llama", **LORA}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> bytes:
    """A real save of LORA on tiny-llama's config."""
    return saved_file(tmp_path_factory.mktemp("save"), TINY, LORA, torch.float32)


def header_text(content: bytes) -> str:
    return content[8:8 + struct.unpack("<Q", content[:8])[0]].decode()


def test_an_uploaded_file_without_javascript_gets_the_module_table(client, weights_file):
    response = client.post("/explain", data={"adapter_config": json.dumps(CONFIG)},
                           files={"adapter_weights_file": ("adapter_model.safetensors", weights_file, "application/octet-stream")})
    assert response.status_code == 200, response.text
    html = response.text
    table = html[html.index('id="weights-modules"'):]
    ranks = re.findall(r'<td class="weights-rank">(\d+)</td>', table)
    assert sorted(ranks) == ["2", "4"]  # rank_pattern put v_proj at 2
    assert "DoRA magnitude" in table
    assert f'id="weights-bytes">{len(weights_file):,}<' in html
    assert 'data-code="size_matches"' in html and 'data-code="rank_differs"' not in html


def test_the_header_sent_as_text_is_read_the_same(client, weights_file):
    response = client.post("/explain", data={"adapter_config": json.dumps({**CONFIG, "r": 8}),
                                             "adapter_weights_header": header_text(weights_file),
                                             "adapter_weights_bytes": str(len(weights_file))},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="explanation"')  # the named block, for htmx
    assert 'data-code="rank_differs"' in response.text and 'data-code="size_differs"' in response.text


def test_weights_alone_are_explained(client, weights_file):
    response = client.post("/explain", data={"adapter_weights_header": header_text(weights_file)})
    assert response.status_code == 200 and 'id="weights-modules"' in response.text


@pytest.mark.parametrize("data, files, field, reason", [
    ({"adapter_weights_header": '{"a": '}, None, "adapter_weights_header", "not valid JSON"),
    ({"adapter_weights_header": "{}", "adapter_weights_bytes": "lots"}, None, "adapter_weights_bytes", "whole number"),
    ({}, {"adapter_weights_file": ("a.safetensors", struct.pack("<Q", 2**40) + b"{}", "application/octet-stream")},
     "adapter_weights_file", "at most"),
])
def test_a_bad_header_is_a_422_naming_the_field(client, data, files, field, reason):
    response = client.post("/explain", data=data, files=files)
    assert response.status_code == 422
    assert f'href="#f-{field}"' in response.text and reason in response.text
    page = client.post("/explain", data=data, files=files).text
    assert 'id="err-adapter_weights_file" class="field-error"' in page  # shown at the file input


def test_the_api_reads_the_header_as_an_object_or_text(client, weights_file):
    body = {"adapter_config": CONFIG, "adapter_weights_header": json.loads(header_text(weights_file)),
            "adapter_weights_bytes": len(weights_file)}
    result = client.post("/api/explain", json=body).json()
    weights = result["weights"]
    assert weights["file_bytes"] == len(weights_file) and weights["predicted"]["matches"] is True
    assert {row["name"]: row["rank"] for row in weights["modules"]} == {"self_attn.q_proj": 4, "self_attn.v_proj": 2}
    text = client.post("/api/explain", json={**body, "adapter_weights_header": header_text(weights_file)}).json()
    assert text["weights"] == weights


@pytest.mark.parametrize("body, loc, reason", [
    ({"adapter_weights_header": {"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}}, ["body", "adapter_weights_header"], "needs 4"),
    ({"adapter_weights_header": {}, "adapter_weights_bytes": "8"}, ["body", "adapter_weights_bytes"], "whole number"),
    ({"adapter_weights_header": "[1]"}, ["body", "adapter_weights_header"], "JSON object"),
])
def test_the_api_refuses_a_bad_header_with_a_422(client, body, loc, reason):
    response = client.post("/api/explain", json=body)
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == loc and reason in detail["msg"]


def test_openapi_documents_the_header_and_its_limits(client):
    from app.spec.limits import MAX_WEIGHTS_HEADER_BYTES

    schema = client.get("/openapi.json").json()
    body = json.dumps(schema["paths"]["/api/explain"]["post"])
    assert "adapter_weights_header" in body and f"{MAX_WEIGHTS_HEADER_BYTES:,}" in body


@pytest.mark.parametrize("header", [
    '{"\\ud800.lora_A.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}}',  # a lone surrogate, escaped
    '{"__metadata__": {"\\udfff": "x"}}',
])
def test_a_header_with_unencodable_text_is_a_422_not_a_500(client, header):
    api = client.post("/api/explain", json={"adapter_weights_header": header})
    assert api.status_code == 422 and api.json()["detail"][0]["loc"] == ["body", "adapter_weights_header"]
    as_object = client.post("/api/explain", content=b'{"adapter_weights_header": ' + header.encode() + b"}",
                            headers={"content-type": "application/json"})
    assert as_object.status_code == 422
    form = client.post("/explain", data={"adapter_weights_header": header})
    assert form.status_code == 422 and "UTF-8" in form.text

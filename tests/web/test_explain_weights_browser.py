"""In Chromium: choosing adapter_model.safetensors on /explain sends only its header and shows the per-module table."""

from __future__ import annotations

import json

import pytest
import torch

from tests.calc.test_adapter_file import TINY
from tests.calc.test_adapter_weights import saved_file
from tests.conftest import serious_accessibility_violations

pytestmark = pytest.mark.browser

LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "o_proj"], "rank_pattern": {"o_proj": 2}}


def test_a_chosen_file_shows_the_saved_ranks_and_only_its_header_is_sent(page, live_server, tmp_path):
    saved_file(tmp_path, TINY, LORA, torch.float32)
    path = tmp_path / "adapter_model.safetensors"
    posted: list[int] = []
    page.on("request", lambda request: posted.append(len(request.post_data_buffer or b"")) if request.method == "POST" else None)
    page.goto(f"{live_server}/explain")
    page.fill("#f-adapter_config", json.dumps({"peft_type": "LORA", "base_model_name_or_path": "tiny-llama", **LORA}))
    page.set_input_files("#f-adapter_weights_file", str(path))
    page.wait_for_selector("#weights-status:has-text('Header read')")
    page.click("#explain-form button[type=submit]")
    table = page.wait_for_selector("#weights-modules")
    rows = {row.query_selector("code").inner_text(): row.query_selector(".weights-rank").inner_text()
            for row in table.query_selector_all("tbody tr")}
    assert rows == {"self_attn.q_proj": "8", "self_attn.o_proj": "2"}
    assert page.locator("[data-code=size_matches]").count() == 1
    header_bytes = int.from_bytes(path.read_bytes()[:8], "little")
    assert posted and max(posted) < header_bytes + 4_096 < path.stat().st_size
    assert serious_accessibility_violations(page) == []

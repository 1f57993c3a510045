"""In Chromium: pick a 24 GB GPU for an 8B model, see out of memory, apply the suggested lever, see it fit; the URL keeps it."""

from __future__ import annotations

import pytest

from tests.conftest import serious_accessibility_violations

pytestmark = pytest.mark.browser


def test_pick_a_gpu_apply_the_suggestion_and_reload(page, live_server):
    page.goto(f"{live_server}/calculator?model=llama-3.1-8b&base_dtype=bf16&target_modules=all-linear&r=16"
              "&per_device_train_batch_size=8&max_seq_length=2048")
    assert page.locator("#fit-badge").count() == 0  # no GPU picked, no badge
    page.select_option("#f-gpu", "rtx4090")
    page.wait_for_selector("#fit-badge")
    assert page.locator("#fit-badge").inner_text() == "out of memory"
    assert "gpu=rtx4090" in page.url
    assert "24 GB" in page.locator("#fit-heading").inner_text()
    assert serious_accessibility_violations(page) == []

    page.click("#apply-suggestion")
    page.wait_for_load_state()
    badge = page.locator("#fit-badge").inner_text()
    assert badge in ("fits", "tight fit")
    assert "per_device_train_batch_size=1" in page.url and "gradient_accumulation_steps=8" in page.url
    assert page.locator("#f-gradient_checkpointing").is_checked()

    page.reload()
    assert page.locator("#fit-badge").inner_text() == badge
    assert page.locator("#f-gpu").input_value() == "rtx4090"
    assert page.locator("#f-per_device_train_batch_size").input_value() == "1"

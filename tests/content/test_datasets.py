"""The dataset catalogue, the committed files and the validation of pasted JSONL."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.content.datasets import (
    DatasetError,
    UnknownDatasetError,
    datasets_dir,
    generate_addition,
    list_datasets,
    load_dataset,
    parse_jsonl,
    preview,
    prompt_and_response,
    to_jsonl,
)
from app.settings import PROJECT_ROOT

CONTENT = PROJECT_ROOT / "content"


def test_catalogue_has_the_three_kinds_of_task_each_with_a_held_out_split():
    infos = {info.id: info for info in list_datasets(CONTENT)}
    assert {info.task for info in infos.values()} == {"qa", "style", "exact_match"}
    assert 60 <= infos["lora-qa"].train_rows + infos["lora-qa"].eval_rows <= 120
    for info in infos.values():
        assert info.train_rows > info.eval_rows > 0
        assert len(info.description) > 40 and info.title


@pytest.mark.parametrize("dataset_id", [info.id for info in list_datasets(CONTENT)])
def test_every_committed_dataset_validates_and_its_splits_do_not_overlap(dataset_id):
    dataset = load_dataset(dataset_id, CONTENT)
    assert len(dataset.train) == dataset.info.train_rows and len(dataset.eval) == dataset.info.eval_rows
    train_prompts = {json.dumps(prompt_and_response(row)[0]) for row in dataset.train}
    assert not any(json.dumps(prompt_and_response(row)[0]) in train_prompts for row in dataset.eval)


def test_the_committed_addition_files_equal_the_generator_output():
    train, held_out = generate_addition()
    assert (datasets_dir(CONTENT) / "addition.train.jsonl").read_text(encoding="utf-8") == to_jsonl(train)
    assert (datasets_dir(CONTENT) / "addition.eval.jsonl").read_text(encoding="utf-8") == to_jsonl(held_out)
    assert all(int(row["response"]) == sum(int(n) for n in row["prompt"][8:].split("?")[0].split(" + ")) for row in train)


def test_the_generator_is_seeded():
    assert generate_addition(seed=1) == generate_addition(seed=1) != generate_addition(seed=2)


def test_telegram_style_answers_follow_the_format():
    dataset = load_dataset("telegram-style", CONTENT)
    for row in dataset.train + dataset.eval:
        assert row["response"] == row["response"].upper() and row["response"].endswith(" STOP")


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(UnknownDatasetError, match="lora-qa"):
        load_dataset("nope", CONTENT)


def test_pasted_pairs_and_chats_are_accepted_in_canonical_form():
    text = "\ufeff" + "\n".join([
        json.dumps({"prompt": "Hi?", "response": "Hello."}),
        "",
        json.dumps({"messages": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "r?"},
                                 {"role": "assistant", "content": "Rank."}]}),
    ]) + "\n"
    rows = parse_jsonl(text, max_bytes=10_000, max_rows=10)
    assert rows[0] == {"prompt": "Hi?", "response": "Hello."}
    assert rows[1]["messages"][2] == {"role": "assistant", "content": "Rank."}
    assert preview(rows) == [{"prompt": "Hi?", "response": "Hello."}, {"prompt": "system: Terse.\nuser: r?", "response": "Rank."}]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"prompt": "a"}', 'missing "response"'),
        ('{"prompt": "a", "response": ""}', "non-empty string"),
        ('{"prompt": "a", "respones": "b"}', "unknown field 'respones'"),
        ('{"prompt": "a", "response": 3}', "non-empty string"),
        ('{"text": "a"}', '"prompt" and "response", or "messages"'),
        ('{"messages": [{"role": "user", "content": "a"}]}', "at least two turns"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}', "role must be one of"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}', "last turn"),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "assistant", "content": "c"}]}', "system turn may only come first"),
        ('{"messages": [{"role": "system", "content": "a"}, {"role": "assistant", "content": "b"}]}', "user turn must come before"),
        ('{"messages": [{"role": "user", "content": "a", "name": "x"}, {"role": "assistant", "content": "b"}]}', "unknown field 'name'"),
    ],
)
def test_each_bad_line_is_reported_with_its_line_number_and_reason(line, reason):
    good = json.dumps({"prompt": "ok", "response": "ok"})
    with pytest.raises(DatasetError) as error:
        parse_jsonl(f"{good}\n\n{line}\n{good}\n", max_bytes=10_000, max_rows=10)
    assert error.value.line == 3
    assert reason in error.value.reason
    assert str(error.value).startswith("line 3: ")


def test_several_bad_lines_are_all_listed():
    with pytest.raises(DatasetError) as error:
        parse_jsonl("{}\n{}\n" + json.dumps({"prompt": "a", "response": "b"}) + "\n{}\n", max_bytes=10_000, max_rows=10)
    assert [line for line, _ in error.value.problems] == [1, 2, 4]


def test_size_and_row_limits_are_enforced_before_anything_else():
    row = json.dumps({"prompt": "a", "response": "b"}) + "\n"
    with pytest.raises(DatasetError, match="at most 20 bytes") as error:
        parse_jsonl(row * 3, max_bytes=20, max_rows=100)
    assert error.value.line is None
    with pytest.raises(DatasetError, match="more than 2 rows") as error:
        parse_jsonl(row * 3, max_bytes=10_000, max_rows=2)
    assert error.value.line == 3


def test_empty_input_is_an_error():
    with pytest.raises(DatasetError, match="no rows"):
        parse_jsonl("\n  \n", max_bytes=100, max_rows=10)


def test_the_module_stays_free_of_torch():
    code = "import sys, app.content.datasets, app.jobs.service, app.spec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"

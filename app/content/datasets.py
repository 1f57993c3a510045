"""Training datasets: the catalogue in content/datasets, pasted-JSONL validation and preview (pure, no torch)."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import deadline

logger = logging.getLogger(__name__)

CATALOGUE_FILE = "catalogue.json"
TASK_KINDS = ("qa", "style", "exact_match")
ROLES = ("system", "user", "assistant")
MAX_REPORTED_PROBLEMS = 20

ADDITION_ID = "addition"
ADDITION_SEED = 20240611
ADDITION_TRAIN_ROWS = 400
ADDITION_EVAL_ROWS = 50


class DatasetError(ValueError):
    """A dataset is unusable; line is the 1-based JSONL line of the first problem (None for the whole file)."""

    def __init__(self, line: int | None, reason: str, problems: list[tuple[int | None, str]] | None = None):
        self.line = line
        self.reason = reason
        self.problems = problems or [(line, reason)]
        where = f"line {line}: " if line is not None else ""
        more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
        super().__init__(f"{where}{reason}{more}")


class UnknownDatasetError(KeyError):
    """A job named a dataset that the catalogue does not hold."""


@dataclass(frozen=True)
class DatasetInfo:
    """One catalogue dataset: what it teaches and how many rows each split holds."""

    id: str
    title: str
    description: str
    task: str  # "qa" | "style" | "exact_match"
    train_rows: int
    eval_rows: int


@dataclass(frozen=True)
class Dataset:
    """A dataset's metadata and its validated rows, split into train and held-out eval."""

    info: DatasetInfo
    train: list[dict]
    eval: list[dict]


def datasets_dir(content_dir: Path) -> Path:
    """The folder holding the catalogue and its JSONL files."""
    return content_dir / "datasets"


def list_datasets(content_dir: Path) -> list[DatasetInfo]:
    """Every catalogue dataset with its row counts, in catalogue order."""
    return [_info(entry, content_dir) for entry in _catalogue(content_dir)]


def dataset_tasks(content_dir: Path) -> dict[str, str]:
    """Each catalogue dataset's task kind, by id; reads the catalogue only, not the rows."""
    return {entry["id"]: entry["task"] for entry in _catalogue(content_dir)}


def load_dataset(dataset_id: str, content_dir: Path) -> Dataset:
    """A catalogue dataset's validated train and eval rows; UnknownDatasetError for an unknown id."""
    for entry in _catalogue(content_dir):
        if entry["id"] == dataset_id:
            train = _read_split(content_dir, dataset_id, "train")
            held_out = _read_split(content_dir, dataset_id, "eval")
            info = DatasetInfo(entry["id"], entry["title"], entry["description"], entry["task"], len(train), len(held_out))
            return Dataset(info=info, train=train, eval=held_out)
    known = ", ".join(entry["id"] for entry in _catalogue(content_dir))
    raise UnknownDatasetError(f"unknown dataset {dataset_id!r}: choose one of {known}")


def parse_jsonl(text: str, max_bytes: int, max_rows: int) -> list[dict]:
    """Validate JSONL line by line (prompt/response or chat messages) and return the rows in canonical form."""
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise DatasetError(None, f"the dataset is {size:,} bytes; at most {max_bytes:,} bytes are allowed")
    rows: list[dict] = []
    problems: list[tuple[int | None, str]] = []
    # JSONL separates rows by "\n" only: U+2028 and other Unicode line breaks may stand inside a JSON string
    for number, line in enumerate(text.lstrip("\ufeff").split("\n"), start=1):
        deadline.check()
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) carry no row
        if len(rows) >= max_rows:
            problems.append((number, f"more than {max_rows:,} rows; at most {max_rows:,} are allowed"))
            break
        try:
            rows.append(validate_row(json.loads(line)))
        except json.JSONDecodeError as error:
            problems.append((number, f"not valid JSON ({error.msg} at column {error.colno})"))
        except RecursionError:
            problems.append((number, "JSON nested too deeply (a row is an object of strings, or of a list of turns)"))
        except DatasetError as error:
            problems.append((number, error.reason))
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            break
    if problems:
        raise DatasetError(problems[0][0], problems[0][1], problems)
    if not rows:
        raise DatasetError(None, "the dataset holds no rows")
    return rows


def validate_row(value: Any) -> dict:
    """One row in canonical form: {"prompt", "response"} or {"messages": [{"role", "content"}, ...]}."""
    if not isinstance(value, dict):
        raise DatasetError(None, "each line must be a JSON object")
    if "messages" in value:
        _no_other_keys(value, {"messages"})
        return {"messages": _validate_messages(value["messages"])}
    if "prompt" in value or "response" in value:
        _no_other_keys(value, {"prompt", "response"})
        for key in ("prompt", "response"):
            if key not in value:
                raise DatasetError(None, f'missing "{key}"')
            if not isinstance(value[key], str) or not value[key].strip():
                raise DatasetError(None, f'"{key}" must be a non-empty string')
        return {"prompt": value["prompt"], "response": value["response"]}
    raise DatasetError(None, 'a row needs "prompt" and "response", or "messages"')


def row_messages(row: dict) -> list[dict]:
    """A row as chat messages: a prompt/response pair becomes one user turn and one assistant turn."""
    if "messages" in row:
        return row["messages"]
    return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]


def prompt_and_response(row: dict) -> tuple[list[dict], str]:
    """The conversation up to the last assistant turn, and that turn's text (what sampling and exact match use)."""
    messages = row_messages(row)
    return messages[:-1], messages[-1]["content"]


def preview(rows: list[dict], limit: int = 5) -> list[dict]:
    """The first rows as {"prompt", "response"} text for display; earlier turns are joined with their roles."""
    shown = []
    for row in rows[:limit]:
        context, response = prompt_and_response(row)
        if len(context) == 1 and context[0]["role"] == "user":
            prompt = context[0]["content"]
        else:
            prompt = "\n".join(f"{message['role']}: {message['content']}" for message in context)
        shown.append({"prompt": prompt, "response": response})
    return shown


def generate_addition(seed: int = ADDITION_SEED, train_rows: int = ADDITION_TRAIN_ROWS,
                      eval_rows: int = ADDITION_EVAL_ROWS) -> tuple[list[dict], list[dict]]:
    """The synthetic exact-match task: two-digit additions, answer the number only; no eval pair appears in train."""
    generator = random.Random(seed)
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    while len(pairs) < train_rows + eval_rows:
        pair = (generator.randint(10, 99), generator.randint(10, 99))
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    rows = [{"prompt": f"What is {a} + {b}? Reply with the number only.", "response": str(a + b)} for a, b in pairs]
    return rows[:train_rows], rows[train_rows:]


def write_addition(content_dir: Path) -> None:
    """Regenerate the addition dataset's files from its seed."""
    train, held_out = generate_addition()
    for split, rows in (("train", train), ("eval", held_out)):
        path = datasets_dir(content_dir) / f"{ADDITION_ID}.{split}.jsonl"
        path.write_text(to_jsonl(rows), encoding="utf-8")
        logger.info("wrote %d rows to %s", len(rows), path)


def to_jsonl(rows: list[dict]) -> str:
    """Rows as JSONL text, one compact object a line, non-ASCII kept readable."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _validate_messages(messages: Any) -> list[dict]:
    """Chat turns: roles system (first only), user, assistant; the last turn is the assistant's answer."""
    if not isinstance(messages, list) or len(messages) < 2:
        raise DatasetError(None, '"messages" must be a list of at least two turns')
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DatasetError(None, f"messages[{index}] must be an object with role and content")
        extra = set(message) - {"role", "content"}
        if extra:
            raise DatasetError(None, f"messages[{index}] has unknown field {sorted(extra)[0]!r} (a turn holds role and content)")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DatasetError(None, f"messages[{index}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if role == "system" and index != 0:
            raise DatasetError(None, f"messages[{index}]: a system turn may only come first")
        if not isinstance(content, str) or not content.strip():
            raise DatasetError(None, f"messages[{index}].content must be a non-empty string")
        checked.append({"role": role, "content": content})
    if checked[-1]["role"] != "assistant":
        raise DatasetError(None, "the last turn must be the assistant's (it is what the model learns to say)")
    first_assistant = next(index for index, message in enumerate(checked) if message["role"] == "assistant")
    if not any(message["role"] == "user" for message in checked[:first_assistant]):
        raise DatasetError(None, "a user turn must come before the first assistant turn")
    return checked


def _no_other_keys(value: dict, allowed: set[str]) -> None:
    """Reject unknown top-level fields, so a typo ("respones") is reported instead of ignored."""
    extra = set(value) - allowed
    if extra:
        raise DatasetError(None, f"unknown field {sorted(extra)[0]!r} (a row holds prompt and response, or messages)")


def _catalogue(content_dir: Path) -> list[dict]:
    """The catalogue entries, checked for the fields every entry needs."""
    entries = json.loads((datasets_dir(content_dir) / CATALOGUE_FILE).read_text(encoding="utf-8"))
    for entry in entries:
        missing = {"id", "title", "description", "task"} - set(entry)
        if missing:
            raise DatasetError(None, f"catalogue entry {entry.get('id')!r} lacks {sorted(missing)}")
        if entry["task"] not in TASK_KINDS:
            raise DatasetError(None, f"catalogue entry {entry['id']!r} has task {entry['task']!r}; use one of {TASK_KINDS}")
    return entries


def _info(entry: dict, content_dir: Path) -> DatasetInfo:
    """Catalogue metadata with row counts read from the split files."""
    counts = [_count_rows(datasets_dir(content_dir) / f"{entry['id']}.{split}.jsonl") for split in ("train", "eval")]
    return DatasetInfo(entry["id"], entry["title"], entry["description"], entry["task"], *counts)


def _count_rows(path: Path) -> int:
    """Non-blank lines of a JSONL file."""
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _read_split(content_dir: Path, dataset_id: str, split: str) -> list[dict]:
    """One split's rows, validated like pasted data (a bad committed file names its line)."""
    path = datasets_dir(content_dir) / f"{dataset_id}.{split}.jsonl"
    text = path.read_text(encoding="utf-8")
    try:
        return parse_jsonl(text, max_bytes=len(text.encode("utf-8")), max_rows=10**7)
    except DatasetError as error:
        raise DatasetError(error.line, f"{path.name}: {error.reason}", error.problems) from None


if __name__ == "__main__":
    logging.basicConfig(level="INFO", format="%(message)s")
    write_addition(Path(__file__).resolve().parents[2] / "content")

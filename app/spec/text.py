"""Form and query-string text read as typed values, by the kind of field it fills."""

from __future__ import annotations

import json
import re
from typing import Any

TRUE_WORDS = frozenset({"true", "on", "1", "yes"})
FALSE_WORDS = frozenset({"false", "off", "0", "no", ""})
_PLAIN_NAMES = re.compile(r"^[\w.,\s-]*$")
_SEPARATORS = re.compile(r"[,\s]+")


def parse_json(text: str) -> Any:
    """json.loads for pasted text; anything it cannot read is a ValueError that says why, never another exception."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise ValueError("not valid JSON here: it is nested too deeply to read") from None
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        raise ValueError("not valid JSON here: it holds a number too long to read") from None


def parse_bool(text: str) -> bool:
    """A checkbox or query value: true/on/1/yes or false/off/0/no."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be true or false, got {text[:40]!r}")


def parse_number(text: str, whole: bool = False) -> int | float:
    """An int when the text is one, else a float; `whole` refuses fractions."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        if whole:
            raise ValueError(f"must be a whole number, got {text[:40]!r}") from None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {text[:40]!r}") from None


def parse_names(text: str) -> str | list[str] | None:
    """'' -> None; all-linear; a JSON list; a regex when it has regex characters; else names split on commas or spaces."""
    text = text.strip()
    if not text:
        return None
    if text.lower() == "all-linear":
        return "all-linear"
    if text.startswith("["):
        names = parse_json(text)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError("a JSON list here must hold module names as strings")
        return names
    if not _PLAIN_NAMES.match(text):
        return text
    return parse_list(text)


def parse_list(text: str) -> list[str] | None:
    """Names separated by commas or spaces; None when there are none."""
    return [item for item in _SEPARATORS.split(text.strip()) if item] or None


def parse_ints(text: str) -> list[int] | None:
    """Whole numbers separated by commas or spaces; None when there are none."""
    return [int(parse_number(item, whole=True)) for item in _SEPARATORS.split(text.strip()) if item] or None


def parse_mapping(text: str) -> dict[str, Any]:
    """'key=value, key=value' (numbers where they read as numbers) or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        value = parse_json(text)
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return value
    result: dict[str, Any] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        key, sep, raw = part.rpartition("=")
        if not sep or not key.strip():
            raise ValueError(f"write key=value pairs separated by commas, got {part[:60]!r}")
        try:
            result[key.strip()] = parse_number(raw)
        except ValueError:
            result[key.strip()] = raw.strip()
    return result


def parse_choice(text: str) -> Any:
    """A choice as submitted; "true"/"false" are the booleans of fields that take either a bool or a name."""
    return {"true": True, "false": False}.get(text.strip(), text.strip())


PARSERS = {
    "bool": parse_bool,
    "int": lambda text: parse_number(text, whole=True),
    "number": parse_number,
    "names": parse_names,
    "list": parse_list,
    "ints": parse_ints,
    "mapping": parse_mapping,
    "choice": parse_choice,
    "text": str.strip,
}


def format_value(value: Any) -> str:
    """A typed value as a form input shows it, the inverse of the parsers above."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        if all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value.values()):
            return ", ".join(f"{key}={item}" for key, item in value.items())
        return json.dumps(value)
    return str(value)

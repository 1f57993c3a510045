"""How peft 0.21 matches module and parameter names: target_modules, exclude_modules, modules_to_save, patterns."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from functools import lru_cache

from app.spec.errors import FieldError
from app.calc.safe_regex import Match, PatternTooCostly, compile_safe, literal_text

ALL_LINEAR = "all-linear"


class FieldPattern:
    """A user pattern that cannot run away (see app.calc.safe_regex), whose problems are reported on its field."""

    __slots__ = ("field", "pattern")

    def __init__(self, pattern: str, field: str):
        self.field = field
        try:
            self.pattern = compile_safe(pattern)
        except re.error as error:  # e.g. a rank_pattern key with a global flag, once peft wraps it in its own regex
            raise FieldError(("lora", field), f"{field}: {pattern!r} is not a valid regular expression: {error}", "regex") from None

    def fullmatch(self, text: str) -> Match | None:
        """re.fullmatch(pattern, text), as peft calls it."""
        try:
            return self.pattern.fullmatch(text)
        except PatternTooCostly as error:
            raise FieldError(("lora", self.field), str(error), "regex_too_costly") from None

    def match(self, text: str) -> Match | None:
        """re.match(pattern, text), as peft calls it."""
        try:
            return self.pattern.match(text)
        except PatternTooCostly as error:
            raise FieldError(("lora", self.field), str(error), "regex_too_costly") from None


@lru_cache(maxsize=4_096)
def compiled(pattern: str, field: str = "target_modules") -> FieldPattern:
    """A compiled, bounded regex for `field`, cached (peft recompiles; the result is the same)."""
    return FieldPattern(pattern, field)


class SegmentShield:
    """modules_to_save's `(^|.*\\.)entry($|\\..*)` test; a plain-name entry is a dotted-segment search."""

    __slots__ = ("literal", "regex")

    def __init__(self, entry: str):
        self.literal = literal_text(entry)
        self.regex = None if self.literal is not None else compiled(rf"(^|.*\.){entry}($|\..*)", "modules_to_save")

    def covers(self, key: str) -> bool:
        """True when peft's regex matches `key`."""
        if self.literal is not None:
            return f".{self.literal}." in f".{key}."
        return self.regex.match(key) is not None


@lru_cache(maxsize=1_024)
def shield(entry: str) -> SegmentShield:
    """The cached shield of one modules_to_save entry."""
    return SegmentShield(entry)


def is_all_linear(target_modules: object) -> bool:
    """True for peft's shorthand, which it compares case-insensitively."""
    return isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR


def is_excluded(exclude_modules: str | Collection[str] | None, key: str) -> bool:
    """exclude_modules: a str is a full-match regex, a list matches exact names or `.name` suffixes."""
    if not exclude_modules:
        return False
    if isinstance(exclude_modules, str):
        return compiled(exclude_modules, "exclude_modules").fullmatch(key) is not None
    return key in exclude_modules or key.endswith(tuple(f".{name}" for name in exclude_modules))


def shielded_by_modules_to_save(modules_to_save: Sequence[str] | None, key: str) -> bool:
    """peft never puts LoRA inside a module listed in modules_to_save (the entry is used as a regex fragment)."""
    if not modules_to_save:
        return False
    return any(shield(name).covers(key) for name in modules_to_save)


def wrapped_by_modules_to_save(modules_to_save: Sequence[str], key: str) -> bool:
    """ModulesToSaveWrapper goes on every module whose name ends with an entry (a plain suffix, no dot)."""
    return bool(key) and key.endswith(tuple(modules_to_save))


def layer_index(key: str, layers_pattern: str | Sequence[str] | None) -> int | None:
    """The first numbered path segment (the decoder layer), or the one after a layers_pattern name."""
    if not layers_pattern:
        match = compiled(r".*?\.[^.]*\.(?P<idx>\d+)\.").match(key)
    else:
        patterns = [layers_pattern] if isinstance(layers_pattern, str) else list(layers_pattern)
        match = None
        for pattern in patterns:
            match = compiled(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", "layers_pattern").match(key)
            if match is not None:
                break
    return int(match.group("idx")) if match else None


def target_matches(
    target_modules: str | Collection[str],
    key: str,
    layers_to_transform: int | Sequence[int] | None = None,
    layers_pattern: str | Sequence[str] | None = None,
) -> bool:
    """target_modules: a str is a full-match regex; a list matches exact names (layer filter skipped) or suffixes."""
    if isinstance(target_modules, str):
        return compiled(target_modules).fullmatch(key) is not None
    if key in target_modules:
        return True
    if not key.endswith(tuple(f".{name}" for name in target_modules)):
        return False
    using_layers = layers_to_transform is not None and (
        len(layers_to_transform) != 0 if isinstance(layers_to_transform, (list, tuple)) else True
    )
    if not using_layers:
        return True
    index = layer_index(key, layers_pattern)
    if index is None:
        return False
    if isinstance(layers_to_transform, int):
        return index == layers_to_transform
    return index in layers_to_transform


def pattern_key(pattern_keys: Sequence[str], key: str, field: str = "rank_pattern") -> str | None:
    """The first rank_pattern/alpha_pattern key matching `(.*\\.)?(key)$` on the full name, as peft resolves it."""
    return pattern_keys_index(tuple(pattern_keys), field).first(key)


class PatternKeys:
    """rank_pattern/alpha_pattern keys in order; plain-name keys (EVA writes one per module) found by lookup."""

    def __init__(self, keys: tuple[str, ...], field: str):
        self.keys = keys
        self.literal_position: dict[str, int] = {}
        self.regexes: list[tuple[int, FieldPattern]] = []
        for position, key in enumerate(keys):
            literal = literal_text(key)
            if literal is not None:
                self.literal_position.setdefault(literal, position)
            else:
                self.regexes.append((position, compiled(rf"(.*\.)?({key})$", field)))

    def first(self, name: str) -> str | None:
        """The first key in order whose pattern matches `name`: a literal matches the name or a dotted suffix of it."""
        best = None
        if self.literal_position:
            suffixes = [name] + [name[index + 1:] for index, char in enumerate(name) if char == "."]
            found = [self.literal_position[suffix] for suffix in suffixes if suffix in self.literal_position]
            best = min(found) if found else None
        for position, regex in self.regexes:
            if best is not None and position > best:
                break
            if regex.match(name):
                best = position
                break
        return None if best is None else self.keys[best]


@lru_cache(maxsize=64)
def pattern_keys_index(keys: tuple[str, ...], field: str) -> PatternKeys:
    """The cached index of one set of pattern keys (a live form recomputes with the same keys on every keystroke)."""
    return PatternKeys(keys, field)

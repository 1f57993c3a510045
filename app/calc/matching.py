"""How peft 0.21 matches module and parameter names: target_modules, exclude_modules, modules_to_save, patterns."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from functools import lru_cache

ALL_LINEAR = "all-linear"


@lru_cache(maxsize=512)
def compiled(pattern: str) -> re.Pattern[str]:
    """A compiled regex, cached (peft recompiles; the result is the same)."""
    return re.compile(pattern)


def is_all_linear(target_modules: object) -> bool:
    """True for peft's shorthand, which it compares case-insensitively."""
    return isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR


def is_excluded(exclude_modules: str | Collection[str] | None, key: str) -> bool:
    """exclude_modules: a str is a full-match regex, a list matches exact names or `.name` suffixes."""
    if not exclude_modules:
        return False
    if isinstance(exclude_modules, str):
        return compiled(exclude_modules).fullmatch(key) is not None
    return key in exclude_modules or key.endswith(tuple(f".{name}" for name in exclude_modules))


def shielded_by_modules_to_save(modules_to_save: Sequence[str] | None, key: str) -> bool:
    """peft never puts LoRA inside a module listed in modules_to_save (the entry is used as a regex fragment)."""
    if not modules_to_save:
        return False
    return any(compiled(rf"(^|.*\.){name}($|\..*)").match(key) for name in modules_to_save)


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
            match = compiled(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.").match(key)
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


def pattern_key(pattern_keys: Sequence[str], key: str) -> str | None:
    """The first rank_pattern/alpha_pattern key matching `(.*\\.)?(key)$` on the full name, as peft resolves it."""
    return _pattern_key(tuple(pattern_keys), key)


@lru_cache(maxsize=65_536)
def _pattern_key(pattern_keys: tuple[str, ...], key: str) -> str | None:
    # cached: a live form recomputes the same module names with the same patterns on every keystroke
    for pattern in pattern_keys:
        if compiled(rf"(.*\.)?({pattern})$").match(key):
            return pattern
    return None

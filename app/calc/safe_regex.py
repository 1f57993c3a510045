"""Regex matching that cannot run away: Python `re` semantics on RE2 (linear time), a time-limited fallback otherwise.

peft matches user patterns with Python's `re`, which backtracks: `(.*)*x` against one module name never ends.
Policy, so that no pattern silently matches differently from peft:

- The pattern is parsed by Python's own `re` parser (so the syntax accepted is exactly what peft accepts) and
  the parse tree is written out in RE2 syntax. Only constructs whose meaning is identical in both engines on
  ASCII text without a newline are translated; module names are such text.
- A pattern using anything else (lookarounds, backreferences, conditionals, atomic groups, possessive
  repeats, repeat counts over 1,000, \\S inside a negated class, case-insensitive non-ASCII literals), and a
  name that is not ASCII or holds a newline, is matched with the `regex` module in its `re`-compatible mode
  (VERSION0), stopped after `BACKTRACKING_MATCH_SECONDS` per name: a pattern that takes longer is refused
  as too costly (peft's own `re` would hang on it).
"""

from __future__ import annotations

import re
import re._constants as sre  # noqa: PLC2701 - the parser's opcodes: the one definition of Python's regex syntax
import re._parser as sre_parse  # noqa: PLC2701
from functools import lru_cache
from typing import Any, Protocol

import re2
import regex

from app import deadline
from app.spec.limits import BACKTRACKING_MATCH_SECONDS

RE2_MAX_REPEAT = 1_000  # RE2 refuses larger counts in {m,n}
_FLAG_LETTERS = ((sre.SRE_FLAG_IGNORECASE, "i"), (sre.SRE_FLAG_MULTILINE, "m"), (sre.SRE_FLAG_DOTALL, "s"))
_AT = {
    sre.AT_BEGINNING: "^",
    sre.AT_END: "$",  # equal to Python's `$` on text without a newline (Python's also matches before a final \n)
    sre.AT_BEGINNING_STRING: r"\A",
    sre.AT_END_STRING: r"\z",
    sre.AT_BOUNDARY: r"\b",
    sre.AT_NON_BOUNDARY: r"\B",
}
# What Python's classes match among ASCII characters (in Unicode mode \s also matches \x1c-\x1f)
_DIGIT, _WORD = r"0-9", r"0-9A-Za-z_"
_SPACE_UNICODE, _SPACE_ASCII = r"\t\n\x0b\x0c\r\x1c-\x1f ", r"\t\n\x0b\x0c\r "

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is expected (it falls back); do not print it to stderr


class PatternTooCostly(ValueError):
    """A pattern that needs backtracking took longer than allowed on one name."""

    def __init__(self, pattern: str, text: str):
        super().__init__(
            f"the pattern {pattern!r} needs backtracking (lookaround or backreference) and took over "
            f"{BACKTRACKING_MATCH_SECONDS * 1000:g} ms on the name {text[:80]!r}; peft's re would stall on it: simplify it"
        )
        self.pattern = pattern


class Match(Protocol):
    """What callers use of a match object (re, re2 and regex all provide it)."""

    def group(self, name: str | int = 0) -> Any: ...


class _Unsupported(Exception):
    """A construct RE2 cannot express with the same meaning."""


class SafePattern:
    """A compiled pattern: RE2 for what it can run exactly, else a backtracking engine with a timeout."""

    def __init__(self, source: str, flags: int = 0):
        self.source = source
        self.flags = flags
        re.compile(source, flags)  # re.error for what peft would refuse, before anything else
        try:
            self.re2: Any = re2.compile(to_re2(source, flags), _RE2_OPTIONS)
        except (_Unsupported, re2.error):
            self.re2 = None
        self._fallback: Any = None

    @property
    def linear(self) -> bool:
        """True when names that are ASCII and newline-free are matched by RE2."""
        return self.re2 is not None

    def fullmatch(self, text: str) -> Match | None:
        """Like re.fullmatch(pattern, text)."""
        return self._run("fullmatch", text)

    def match(self, text: str) -> Match | None:
        """Like re.match(pattern, text): anchored at the start."""
        return self._run("match", text)

    def _run(self, how: str, text: str) -> Match | None:
        deadline.check()
        if self.re2 is not None and text.isascii() and "\n" not in text:
            return getattr(self.re2, how)(text)
        if self._fallback is None:
            self._fallback = regex.compile(self.source, self.flags | regex.VERSION0)
        timeout = min(BACKTRACKING_MATCH_SECONDS, deadline.remaining(BACKTRACKING_MATCH_SECONDS))
        try:
            return getattr(self._fallback, how)(text, timeout=timeout, concurrent=True)
        except TimeoutError:
            deadline.check()  # the request's own budget ran out: say that rather than blame the pattern
            raise PatternTooCostly(self.source, text) from None


@lru_cache(maxsize=4_096)
def compile_safe(pattern: str, flags: int = 0) -> SafePattern:
    """A SafePattern, cached; re.error if Python's re (hence peft) would refuse the pattern."""
    return SafePattern(pattern, flags)


@lru_cache(maxsize=65_536)
def literal_text(pattern: str) -> str | None:
    """The text a pattern matches when it is plain literal characters (q_proj, model.embed_tokens has a `.`: no)."""
    try:
        parsed = sre_parse.parse(pattern)
    except re.error:
        return None
    if parsed.state.flags & ~sre.SRE_FLAG_UNICODE or not all(op is sre.LITERAL for op, _ in parsed):
        return None
    return "".join(chr(code) for _, code in parsed)


def to_re2(pattern: str, flags: int = 0) -> str:
    """The pattern in RE2 syntax with Python's meaning on ASCII text; _Unsupported where that is not possible."""
    parsed = sre_parse.parse(pattern, flags)
    all_flags = parsed.state.flags
    if all_flags & sre.SRE_FLAG_LOCALE:
        raise _Unsupported("LOCALE")
    names = {number: name for name, number in parsed.state.groupdict.items()}
    writer = _Writer(names, ascii_only=bool(all_flags & sre.SRE_FLAG_ASCII), ignorecase=bool(all_flags & sre.SRE_FLAG_IGNORECASE))
    return _flag_prefix(all_flags) + writer.sequence(parsed)


def _flag_prefix(flags: int) -> str:
    letters = "".join(letter for flag, letter in _FLAG_LETTERS if flags & flag)
    return f"(?{letters})" if letters else ""


def _char(code: int) -> str:
    return rf"\x{{{code:x}}}"


class _Writer:
    """Writes a parse tree of Python's re as RE2 syntax."""

    def __init__(self, names: dict[int, str], ascii_only: bool, ignorecase: bool):
        self.names = names
        self.space = _SPACE_ASCII if ascii_only else _SPACE_UNICODE
        self.ignorecase = ignorecase

    def sequence(self, items) -> str:
        return "".join(self.item(op, av) for op, av in items)

    def item(self, op, av) -> str:
        if op is sre.LITERAL:
            return self.literal(av)
        if op is sre.NOT_LITERAL:
            self.literal(av)
            return f"[^{_char(av)}]"
        if op is sre.ANY:
            return "."
        if op is sre.IN:
            return self.char_class(av)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(branch) for branch in av[1]) + ")"
        if op is sre.SUBPATTERN:
            group, add_flags, del_flags, body = av
            if (add_flags | del_flags) & (sre.SRE_FLAG_ASCII | sre.SRE_FLAG_LOCALE):
                raise _Unsupported("scoped ASCII or LOCALE")
            if add_flags & sre.SRE_FLAG_IGNORECASE:
                self.ignorecase, saved = True, self.ignorecase
            else:
                saved = self.ignorecase
            if del_flags & sre.SRE_FLAG_IGNORECASE:
                self.ignorecase = False
            inner = self.sequence(body)
            self.ignorecase = saved
            added = "".join(letter for flag, letter in _FLAG_LETTERS if add_flags & flag)
            removed = "".join(letter for flag, letter in _FLAG_LETTERS if del_flags & flag)
            scoped = f"(?{added}-{removed}:{inner})" if removed else f"(?{added}:{inner})" if added else f"(?:{inner})"
            if group is None:
                return scoped
            name = self.names.get(group)
            return f"(?P<{name}>{scoped})" if name else f"({scoped})"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, body = av
            if low > RE2_MAX_REPEAT or (high is not sre.MAXREPEAT and high > RE2_MAX_REPEAT):
                raise _Unsupported("repeat count")
            count = f"{{{low},}}" if high is sre.MAXREPEAT else f"{{{low},{high}}}"
            return f"(?:{self.sequence(body)}){count}" + ("?" if op is sre.MIN_REPEAT else "")
        if op is sre.AT:
            return _AT[av]
        raise _Unsupported(str(op))  # lookarounds, backreferences, conditionals, atomic and possessive

    def literal(self, code: int) -> str:
        if self.ignorecase and code > 0x7F:
            raise _Unsupported("case-insensitive non-ASCII")  # Unicode case folding differs between the engines
        return _char(code)

    def char_class(self, items) -> str:
        negate = bool(items) and items[0][0] is sre.NEGATE
        parts: list[str] = []
        not_space = False
        for op, av in items[1:] if negate else items:
            if op is sre.LITERAL:
                parts.append(self.literal(av))
            elif op is sre.RANGE:
                low, high = av
                if self.ignorecase and high > 0x7F:
                    raise _Unsupported("case-insensitive non-ASCII range")
                parts.append(f"{_char(low)}-{_char(high)}")
            elif op is sre.CATEGORY:
                if av is sre.CATEGORY_NOT_SPACE:
                    not_space = True
                else:
                    parts.append(self.category(av))
            else:
                raise _Unsupported(str(op))
        if not not_space:
            return f"[{'^' if negate else ''}{''.join(parts)}]" if parts else ("[^\\x00-\\x{10ffff}]" if not negate else "(?s:.)")
        if negate:
            raise _Unsupported("\\S in a negated class")
        # [\S...] = anything but space, or one of the other members
        others = f"|[{''.join(parts)}]" if parts else ""
        return f"(?:[^{self.space}]{others})"

    def category(self, category) -> str:
        table = {
            sre.CATEGORY_DIGIT: _DIGIT,
            sre.CATEGORY_NOT_DIGIT: r"\D",
            sre.CATEGORY_WORD: _WORD,
            sre.CATEGORY_NOT_WORD: r"\W",
            sre.CATEGORY_SPACE: self.space,
        }
        if category not in table:
            raise _Unsupported(str(category))
        return table[category]

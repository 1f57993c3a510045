"""Bounded regex matching: the same answers as Python's re (peft's engine), in bounded time."""

from __future__ import annotations

import random
import re
import time

import pytest

from app import deadline
from app.calc.safe_regex import PatternTooCostly, compile_safe, literal_text

# short: the oracle is Python's re, which backtracks exponentially on some random patterns over long names
NAMES = ["h.3.q_proj", "mlp.down", "lm_head", "a", "", "ab_c", "x.y", "Q_PROJ", "k\x1cv", "A1b2", "e.0.w1", "b a"]
ATOMS = ["a", "b", "q", "_", "proj", r"\.", ".", r"\d", r"\w", r"\s", r"\S", r"\W", r"\D", "[a-c]", "[^a]",
         r"[\S_]", r"[\d.]", "[A-Z]", r"\b", "^", "$", r"\A", r"\Z", "1"]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{,2}", "{1,3}", "*?", "+?"]


def random_pattern(rng: random.Random, depth: int = 0) -> str:
    """A small random pattern from the syntax peft users write (and some they do not)."""
    parts = []
    for _ in range(rng.randint(1, 4)):
        if depth < 2 and rng.random() < 0.25:
            inner = "|".join(random_pattern(rng, depth + 1) for _ in range(rng.randint(1, 3)))
            atom = rng.choice(["(", "(?:", "(?i:", "(?P<g%d>" % rng.randint(0, 99)]) + inner + ")"
        else:
            atom = rng.choice(ATOMS)
        quantifier = rng.choice(QUANTIFIERS) if atom not in ("^", "$", r"\A", r"\Z", r"\b") else ""
        parts.append(atom + quantifier)
    return rng.choice(["", "", "(?i)", "(?s)", "(?m)", ".*"]) + "".join(parts)


def test_random_patterns_match_exactly_as_python_re_does():
    rng = random.Random(11)
    compared = translated = 0
    while compared < 3_000:
        pattern = random_pattern(rng)
        try:
            expected = re.compile(pattern)
        except re.error:
            continue
        safe = compile_safe(pattern)
        translated += safe.linear
        for name in NAMES:
            assert bool(safe.fullmatch(name)) == bool(expected.fullmatch(name)), (pattern, name)
            assert bool(safe.match(name)) == bool(expected.match(name)), (pattern, name)
        compared += 1
    assert translated > 0.9 * compared  # the comparison is of RE2, not of the fallback


@pytest.mark.filterwarnings("ignore:Possible nested set")
@pytest.mark.parametrize("pattern", [r"a{,3}b", r"[[:alpha:]]+", r"\Z", r"x$", r"(?i)Q_PROJ", r"[\s]", r"\x1c"])
def test_syntax_that_re2_reads_differently_keeps_pythons_meaning(pattern):
    for name in ["aab", "aaaab", "[:alpha:]]", "alpha", "q_proj", "x", "\x1c", " "]:
        assert bool(compile_safe(pattern).fullmatch(name)) == bool(re.fullmatch(pattern, name)), (pattern, name)


@pytest.mark.parametrize("pattern", [r"(.*)*x", r"(.*){7}x", r"(a|a)*b", r"((.*)*)*\d{1000}y"])
def test_catastrophic_patterns_run_in_linear_time(pattern):
    name = "model.layers.10.self_attn.q_proj" * 4
    started = time.perf_counter()
    assert compile_safe(pattern).linear
    assert compile_safe(pattern).fullmatch(name) is None
    assert time.perf_counter() - started < 0.5


def test_lookarounds_and_backreferences_keep_pythons_answers_on_the_fallback():
    pattern = r"^(?!.*vision).*\.(q|v)_proj$"
    safe = compile_safe(pattern)
    assert not safe.linear
    for name in ["model.vision.layers.0.q_proj", "model.layers.0.self_attn.q_proj", "model.layers.0.k_proj"]:
        assert bool(safe.fullmatch(name)) == bool(re.fullmatch(pattern, name))
    assert compile_safe(r"(\w)\1_proj").fullmatch("qq_proj") and not compile_safe(r"(\w)\1_proj").fullmatch("qk_proj")


def test_a_backtracking_pattern_that_runs_too_long_is_refused_quickly():
    pattern = r"(a|aa)+(?=b)"  # the lookahead forces the fallback; the alternation makes it exponential
    started = time.perf_counter()
    with pytest.raises(PatternTooCostly, match="simplify it"):
        compile_safe(pattern).fullmatch("a" * 60)
    assert time.perf_counter() - started < 1


def test_a_spent_budget_stops_matching():
    budget = deadline.Budget(0)
    with deadline.limited(budget), pytest.raises(deadline.BudgetExceeded):
        compile_safe("q_proj").fullmatch("q_proj")
    budget = deadline.Budget(60)
    budget.cancelled.set()
    with deadline.limited(budget), pytest.raises(deadline.WorkCancelled):
        compile_safe("q_proj").fullmatch("q_proj")


def test_literal_text_only_for_plain_names():
    assert literal_text("q_proj") == "q_proj"
    assert literal_text("lm-head") == "lm-head"
    assert literal_text("model.embed") is None  # `.` is any character
    assert literal_text(r"q_proj$") is None and literal_text("(?i)q") is None and literal_text("q|v") is None

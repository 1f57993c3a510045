"""Reading loss curves: flags (overfitting, divergence, plateau, too-high learning rate) and a comparison caption.

Pure: metric rows in (dicts with step, train_loss, eval_loss, ...), statements out. Every sentence is built
from the numbers it describes; nothing is said that the data does not show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GUIDES = {
    "overfitting": "/guides/overfitting",
    "divergence": "/guides/loss-nan-or-exploding",
    "lr_too_high": "/guides/loss-nan-or-exploding",
    "plateau": "/guides/loss-not-decreasing",
}
DIVERGED_RATIO = 2.0  # a train loss ending at twice its start (or any loss five times it) has diverged
SPIKE_RATIO = 1.3  # a train loss rising 30% above its start, without diverging, points at the learning rate
PLATEAU_DROP = 0.03  # a run whose train loss fell less than 3% of its start did not learn
OVERFIT_RISE = 0.02  # eval loss 2% above its best while train loss fell: overfitting
STILL_FALLING_DROP = 0.01  # the last stretch of a curve still 1% below the stretch before it
SAME_RESULT = 0.01  # final losses within 1% of each other: the swept value made no visible difference


@dataclass(frozen=True)
class Flag:
    """One thing a curve shows, in words, with the guide that explains it."""

    kind: str  # overfitting | divergence | lr_too_high | plateau
    message: str

    @property
    def guide(self) -> str:
        """The troubleshooting guide for this kind of curve."""
        return GUIDES[self.kind]


@dataclass(frozen=True)
class RunCurve:
    """One run of a comparison: its label (e.g. "r = 16"), its metric rows and measured figures."""

    label: str
    points: Sequence[Mapping[str, Any]]
    trainable_params: int | None = None


@dataclass
class RunSummary:
    """The figures of one run that a comparison table shows."""

    label: str
    final_train_loss: float | None
    final_eval_loss: float | None
    best_eval_loss: float | None
    best_eval_step: int | None
    final_exact_match: float | None
    trainable_params: int | None
    steps: int
    flags: list[Flag] = field(default_factory=list)
    still_falling: bool = False


def _series(points: Sequence[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for the rows that have key."""
    return [(int(point["step"]), float(point[key])) for point in points if point.get(key) is not None]


def _finite(values: list[tuple[int, float]]) -> bool:
    return all(math.isfinite(value) for _, value in values)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _window(values: list[tuple[int, float]]) -> int:
    """Points averaged at each end of a noisy curve: a fifth of it, at least one."""
    return max(1, len(values) // 5)


def _start(values: list[tuple[int, float]]) -> float:
    return _mean([value for _, value in values[: _window(values)]])


def _end(values: list[tuple[int, float]]) -> float:
    return _mean([value for _, value in values[-_window(values):]])


def _number(value: float) -> str:
    """A loss or rate as people read it: four significant digits."""
    return f"{value:.4g}"


def _percent(fraction: float) -> str:
    """A small share with two significant digits: 0.035%, 0.5%, 12%."""
    return f"{100 * fraction:.2g}%"


def flags(points: Sequence[Mapping[str, Any]]) -> list[Flag]:
    """What the curve of one run shows that needs attention; empty when it trained normally (or too little to tell)."""
    train = _series(points, "train_loss")
    evals = _series(points, "eval_loss")
    found: list[Flag] = []
    for name, values in (("train", train), ("eval", evals)):
        bad = next(((step, value) for step, value in values if not math.isfinite(value)), None)
        if bad is not None:
            return [Flag("divergence", f"The {name} loss became {bad[1]} at step {bad[0]}: the run diverged.")]
    if len(train) < 3:
        return found
    start, end = _start(train), _end(train)
    peak_step, peak = max(train[1:], key=lambda item: item[1])
    if end >= DIVERGED_RATIO * start or peak >= 5 * start:
        return [Flag("divergence", f"The train loss exploded: it started near {_number(start)}, reached {_number(peak)} "
                                   f"at step {peak_step} and ended near {_number(end)}.")]
    if peak >= SPIKE_RATIO * start or end > start:
        rate = next((point.get("learning_rate") for point in points if int(point["step"]) == peak_step), None)
        at_rate = f" (learning rate {_number(rate)} at that step)" if rate else ""
        found.append(Flag("lr_too_high", f"The train loss rose to {_number(peak)} at step {peak_step}{at_rate}, above where it "
                                         f"started ({_number(start)}): a sign the learning rate is too high."))
    elif start - end < PLATEAU_DROP * start and not (len(evals) >= 2 and evals[0][1] - evals[-1][1] >= PLATEAU_DROP * evals[0][1]):
        # a noisy train loss can hide learning that the held-out loss shows
        found.append(Flag("plateau", f"The train loss barely moved: from {_number(start)} to {_number(end)} "
                                     f"({(end - start) / start:+.1%}) over {train[-1][0]} steps."))
    if len(evals) >= 3:
        best_step, best = min(evals, key=lambda item: item[1])
        last_step, last = evals[-1]
        train_at_best = [value for step, value in train if step <= best_step][-_window(train):]
        train_after = [value for step, value in train if step > best_step][-_window(train):]
        if (best_step < last_step and last > best * (1 + OVERFIT_RISE) and train_after
                and _mean(train_after) < _mean(train_at_best)):
            found.append(Flag("overfitting", f"The eval loss was lowest at step {best_step} ({_number(best)}) and rose to "
                                             f"{_number(last)} by step {last_step}, while the train loss kept falling "
                                             f"({_number(_mean(train_at_best))} to {_number(_mean(train_after))})."))
    return found


def still_falling(points: Sequence[Mapping[str, Any]]) -> bool:
    """True when the run's loss (eval where it has three evaluations, else train) was still going down at the end."""
    evals = _series(points, "eval_loss")
    values = evals if len(evals) >= 3 else _series(points, "train_loss")
    if len(values) < 3 or not _finite(values):
        return False
    if values is evals:
        return values[-1][1] < values[-2][1] * (1 - STILL_FALLING_DROP)
    size = max(1, len(values) // 4)
    last, before = values[-size:], values[-2 * size:-size]
    return bool(before) and _mean([v for _, v in last]) < _mean([v for _, v in before]) * (1 - STILL_FALLING_DROP)


def summarise(run: RunCurve) -> RunSummary:
    """One run's row of the comparison table, with its flags."""
    train = _series(run.points, "train_loss")
    evals = _series(run.points, "eval_loss")
    exact = _series(run.points, "exact_match")
    finite_evals = [item for item in evals if math.isfinite(item[1])]
    best = min(finite_evals, key=lambda item: item[1]) if finite_evals else None
    return RunSummary(
        label=run.label,
        final_train_loss=train[-1][1] if train else None,
        final_eval_loss=evals[-1][1] if evals else None,
        best_eval_loss=best[1] if best else None,
        best_eval_step=best[0] if best else None,
        final_exact_match=exact[-1][1] if exact else None,
        trainable_params=run.trainable_params,
        steps=max((int(point["step"]) for point in run.points), default=0),
        flags=flags(run.points),
        still_falling=still_falling(run.points),
    )


def _names(labels: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def caption(runs: Sequence[RunCurve]) -> list[str]:
    """Sentences comparing the runs, each computed from their metrics: the best, by how much, at what cost, what went wrong."""
    summaries = [summarise(run) for run in runs]
    finished = [summary for summary in summaries if summary.steps]
    if not finished:
        return ["No run has reported a step yet."]
    sentences: list[str] = []
    diverged = [summary for summary in finished if any(flag.kind == "divergence" for flag in summary.flags)]
    healthy = [summary for summary in finished if summary not in diverged]
    by_eval = all(summary.best_eval_loss is not None for summary in healthy)
    key_name = "eval loss" if by_eval else "final train loss"

    def score(summary: RunSummary) -> float:
        return summary.best_eval_loss if by_eval else summary.final_train_loss  # type: ignore[return-value]

    ranked = sorted((summary for summary in healthy if score(summary) is not None and math.isfinite(score(summary))), key=score)
    if ranked:
        best = ranked[0]
        where = f" at step {best.best_eval_step}" if by_eval else ""
        sentence = f"{best.label} reached the lowest {key_name}: {_number(score(best))}{where}"
        if len(ranked) > 1:
            runner_up, worst = ranked[1], ranked[-1]
            gap = score(runner_up) - score(best)
            spread = score(worst) - score(best)
            if spread <= SAME_RESULT * score(best):
                sentence += (f"; every run ended within {_percent(spread / score(best))} of it, so on this run the swept value "
                             "made little difference")
            else:
                sentence += (f", {_number(gap)} ({gap / score(runner_up):.1%}) below the next best, {runner_up.label}"
                             + (f", and {_number(spread)} below the worst, {worst.label}" if worst is not runner_up else ""))
        sentences.append(sentence + ".")
        cheapest = min((summary for summary in ranked if summary.trainable_params), key=lambda s: s.trainable_params or 0,
                       default=None)
        if best.trainable_params and cheapest and cheapest.trainable_params != best.trainable_params:
            ratio = best.trainable_params / cheapest.trainable_params  # type: ignore[operator]
            sentences.append(
                f"It trains {best.trainable_params:,} parameters, {ratio:.2g}x the {cheapest.trainable_params:,} of "
                f"{cheapest.label}" + (f", whose {key_name} was {_number(score(cheapest))}." if cheapest is not best else "."))
        elif best.trainable_params and len({summary.trainable_params for summary in ranked}) == 1 and len(ranked) > 1:
            sentences.append(f"Every run trains the same {best.trainable_params:,} parameters.")
    falling = [summary.label for summary in healthy if summary.still_falling]
    if falling:
        sentences.append(f"Still falling at the last step: {_names(falling)}; more steps would likely lower "
                         f"{'it' if len(falling) == 1 else 'them'} further.")
    if diverged:
        sentences.append(f"Diverged: {_names([summary.label for summary in diverged])}.")
    for kind, words in (("overfitting", "Overfitting (eval loss rising while train loss fell)"),
                        ("lr_too_high", "Train loss rose above its start"), ("plateau", "Barely learned")):
        labels = [summary.label for summary in finished if any(flag.kind == kind for flag in summary.flags)]
        if labels:
            sentences.append(f"{words}: {_names(labels)}.")
    return sentences

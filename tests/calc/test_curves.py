"""Reading curves: synthetic metrics that overfit, diverge, plateau or run hot, and the caption each comparison gets."""

from __future__ import annotations

import math

from app.calc.curves import RunCurve, caption, flags, still_falling, summarise


def rows(train: list[float], evals: dict[int, float] | None = None, rate: float = 1e-4) -> list[dict]:
    """Metric rows, one per step from 1, eval losses on the steps given."""
    return [{"step": step, "train_loss": loss, "learning_rate": rate, "eval_loss": (evals or {}).get(step)}
            for step, loss in enumerate(train, start=1)]


def falling(start: float, end: float, steps: int) -> list[float]:
    """A smooth exponential decline from start to end."""
    return [end + (start - end) * math.exp(-4 * index / (steps - 1)) for index in range(steps)]


# eval loss falls to its best at step 10 then climbs while the train loss keeps falling
OVERFITS = rows(falling(2.0, 0.2, 30), {5: 1.6, 10: 1.2, 15: 1.3, 20: 1.45, 25: 1.6, 30: 1.8})
# the loss goes to NaN at step 6
DIVERGES = rows([2.0, 1.9, 2.5, 4.0, 9.0, float("nan"), float("nan"), float("nan")], rate=5e-2)
# the train loss hardly moves
PLATEAUS = rows([2.000, 1.998, 2.001, 1.997, 1.999, 1.996, 1.998, 1.995, 1.997, 1.996], {5: 2.01, 10: 2.0}, rate=1e-7)
# learns steadily and is still learning at the end
LEARNS = rows(falling(2.0, 0.9, 20) + [0.85, 0.8, 0.75, 0.7], {8: 1.5, 16: 1.2, 24: 1.0})
# loss jumps well above its start mid-run, then comes back down somewhat
HOT = rows([2.0, 1.8, 1.7, 2.9, 2.4, 2.0, 1.9, 1.85, 1.8, 1.8])


def kinds(points) -> list[str]:
    return [flag.kind for flag in flags(points)]


def test_each_curve_gets_exactly_its_flag():
    assert kinds(OVERFITS) == ["overfitting"]
    assert kinds(DIVERGES) == ["divergence"]
    assert kinds(PLATEAUS) == ["plateau"]
    assert kinds(LEARNS) == []
    assert kinds(HOT) == ["lr_too_high"]


def test_flags_quote_the_numbers_and_link_their_guides():
    overfit = flags(OVERFITS)[0]
    assert "step 10 (1.2)" in overfit.message and "1.8 by step 30" in overfit.message
    assert overfit.guide == "/guides/overfitting"
    diverged = flags(DIVERGES)[0]
    assert "nan at step 6" in diverged.message and diverged.guide == "/guides/loss-nan-or-exploding"
    plateau = flags(PLATEAUS)[0]
    assert "barely moved" in plateau.message and plateau.guide == "/guides/loss-not-decreasing"
    hot = flags(HOT)[0]
    assert "2.9 at step 4" in hot.message and "learning rate 0.0001" in hot.message


def test_an_exploding_loss_without_nan_is_divergence():
    exploding = rows([2.0, 2.1, 3.0, 5.0, 8.0, 12.0])
    assert kinds(exploding) == ["divergence"] and "reached 12" in flags(exploding)[0].message


def test_still_falling_reads_the_eval_curve_when_there_is_one():
    assert still_falling(LEARNS)
    assert not still_falling(OVERFITS)
    assert not still_falling(PLATEAUS)
    assert not still_falling(DIVERGES)


def test_summary_finds_the_best_eval_step_not_the_last():
    summary = summarise(RunCurve("a", OVERFITS, 100))
    assert (summary.best_eval_loss, summary.best_eval_step, summary.final_eval_loss) == (1.2, 10, 1.8)
    assert summary.steps == 30


def test_caption_names_the_best_the_margin_the_cost_and_what_went_wrong():
    runs = [RunCurve("r = 4", OVERFITS, 1_000), RunCurve("r = 16", LEARNS, 4_000), RunCurve("r = 64", DIVERGES, 16_000),
            RunCurve("r = 8", PLATEAUS, 2_000)]
    sentences = caption(runs)
    # r = 16's best eval is 1.0, r = 4's 1.2: 0.2 below, 16.7% of the runner-up; the worst healthy is r = 8 (2.0)
    assert sentences[0] == ("r = 16 reached the lowest eval loss: 1 at step 24, 0.2 (16.7%) below the next best, r = 4, "
                            "and 1 below the worst, r = 8.")
    assert sentences[1] == "It trains 4,000 parameters, 4x the 1,000 of r = 4, whose eval loss was 1.2."
    assert "Still falling at the last step: r = 16; more steps would likely lower it further." in sentences
    assert "Diverged: r = 64." in sentences
    assert "Overfitting (eval loss rising while train loss fell): r = 4." in sentences
    assert "Barely learned: r = 8." in sentences
    assert len(sentences) == 6


def test_caption_says_when_the_value_made_no_difference():
    twin = rows(falling(2.0, 1.0, 10), {5: 1.30, 10: 1.10})
    near = rows(falling(2.0, 1.0, 10), {5: 1.30, 10: 1.105})
    sentences = caption([RunCurve("seed = 1", twin, 500), RunCurve("seed = 2", near, 500)])
    assert "within 0.45% of it" in sentences[0] and "made little difference" in sentences[0]
    assert "Every run trains the same 500 parameters." in sentences


def test_caption_without_evaluation_ranks_by_final_train_loss():
    slow, fast = falling(2.0, 1.5, 10), falling(2.0, 1.0, 10)
    sentences = caption([RunCurve("lr = 1e-4", rows(slow)), RunCurve("lr = 1e-3", rows(fast))])
    gap = slow[-1] - fast[-1]
    assert sentences[0] == (f"lr = 1e-3 reached the lowest final train loss: {fast[-1]:.4g}, {gap:.4g} "
                            f"({gap / slow[-1]:.1%}) below the next best, lr = 1e-4.")


def test_caption_of_runs_that_have_not_started():
    assert caption([RunCurve("a", []), RunCurve("b", [])]) == ["No run has reported a step yet."]


def test_a_flat_noisy_train_loss_is_no_plateau_when_the_eval_loss_fell():
    noisy = rows([4.4, 4.6, 4.3, 4.5, 4.35, 4.5, 4.4, 4.45, 4.38, 4.4], {5: 4.6, 10: 4.3})
    assert "plateau" not in kinds(noisy)

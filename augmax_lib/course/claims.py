"""Sentences about measured numbers, built from the numbers: the size of an effect, its uncertainty, a verdict.

The course never types a sentence that compares measured numbers. A notebook measures an :class:`Effect` (a
difference with its standard error and what the error is over: seeds, test images, channels), and
:func:`claim` turns it into Markdown that gives the size, its 95% interval and a verdict against the paper's
direction: **holds here** (the interval excludes zero on the paper's side), **within noise here** (it
contains zero) or **reversed here** (it excludes zero on the other side), with the reason the notebook gives
for that verdict at this scale. ``IPython.display.Markdown`` of the result reads the same in a live notebook
and in the book.

    >>> e = paired([55.3, 54.1, 57.0], [52.2, 53.4, 55.9])     # AugMax-DuBIN's RA and Normal's, per seed
    >>> text = claim("AugMax-DuBIN's RA minus Normal's", e, paper="+15.6 points (ResNet18, CIFAR-10-C)",
    ...              why={NOISE: "three seeds of small models", REVERSED: "..."})
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence

__all__ = ["Effect", "paired", "unpaired", "one_sample", "paired_images", "from_estimates", "with_seed_spread",
           "t_critical", "verdict", "claim", "signed", "show", "HOLDS", "NOISE", "REVERSED", "SAME", "DIFFERS"]

HOLDS, NOISE, REVERSED = "holds here", "within noise here", "reversed here"
# For a claim of no difference (the paper's "SA is not hurt"): the interval contains zero, or it does not.
SAME, DIFFERS = "holds here: no difference resolved", "differs here"

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom (tests/test_course_claims.py checks
# them against scipy); beyond 30 the normal's 1.96 is within 2% of t's.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_critical(df: Optional[int]) -> float:
    """The two-sided 95% critical value: Student's t with ``df`` degrees of freedom, the normal's for None."""
    if df is None or df > len(_T95):
        return 1.96
    if df < 1:
        raise ValueError(f"df: expected at least 1 degree of freedom, got {df}")
    return _T95[int(df) - 1]


@dataclass(frozen=True)
class Effect:
    """A measured quantity (usually a difference, in percentage points) with its standard error.

    ``over`` says what the error is over ("3 seeds", "1,000 test images"); ``df`` is the degrees of freedom
    of its t interval (None: a normal interval, for errors over many images).
    """

    value: float
    se: float
    over: str
    df: Optional[int] = None
    unit: str = "points"

    @property
    def half_width(self) -> float:
        """Half the width of the 95% interval."""
        return t_critical(self.df) * self.se

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% interval (value -/+ half width)."""
        return self.value - self.half_width, self.value + self.half_width

    def __neg__(self) -> "Effect":
        return replace(self, value=-self.value)


def _check_values(values, name: str) -> list[float]:
    values = [float(v) for v in values]
    if not values or any(not math.isfinite(v) for v in values):
        raise ValueError(f"{name}: expected finite numbers, got {values}")
    return values


def one_sample(values: Sequence[float], over: str = "seeds", unit: str = "points") -> Effect:
    """The mean of ``values`` with its standard error (sd / sqrt(n)), e.g. one model's SA over seeds."""
    values = _check_values(values, "values")
    n = len(values)
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return Effect(statistics.fmean(values), se, f"{n} {over}", n - 1 if n > 1 else None, unit)


def paired(a: Sequence[float], b: Sequence[float], over: str = "seeds", unit: str = "points") -> Effect:
    """``a - b`` paired element by element (the same seed, the same image): mean difference and its error."""
    a, b = _check_values(a, "a"), _check_values(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a, b: expected paired values of equal length, got {len(a)} and {len(b)}")
    return one_sample([x - y for x, y in zip(a, b)], over, unit)


def unpaired(a: Sequence[float], b: Sequence[float], over: str = "seeds", unit: str = "points") -> Effect:
    """``mean(a) - mean(b)`` of two independent samples, Welch's standard error and degrees of freedom."""
    a, b = _check_values(a, "a"), _check_values(b, "b")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a, b: expected at least two values each for a spread, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = None
    if se > 0:
        df = max(1, int((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))))
    return Effect(statistics.fmean(a) - statistics.fmean(b), se, f"{len(a)} and {len(b)} {over}", df, unit)


def paired_images(correct_a, correct_b, unit: str = "points") -> Effect:
    """Accuracy of A minus accuracy of B on the same test images (booleans per image), in points.

    The standard error is over images (the test set as a sample of the distribution), not over training seeds.
    """
    import torch

    a = torch.as_tensor(correct_a).double().flatten()
    b = torch.as_tensor(correct_b).double().flatten()
    if a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"correct_a, correct_b: expected per-image booleans of one length (at least 2), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    d = 100.0 * (a - b)
    return Effect(float(d.mean()), float(d.std(unbiased=True) / math.sqrt(d.numel())),
                  f"{d.numel():,} test images", None, unit)


def from_estimates(a: float, se_a: float, b: float, se_b: float, over: str, unit: str = "points") -> Effect:
    """``a - b`` of two independent estimates with their standard errors (a normal interval)."""
    return Effect(float(a) - float(b), math.sqrt(float(se_a) ** 2 + float(se_b) ** 2), over, None, unit)


def with_seed_spread(effect: Effect, seed_sd: float, seeds: int = 1, what: str = "") -> Effect:
    """``effect`` (a difference of two single-seed runs measured over images) with the variance that retraining
    adds: each run's seed-to-seed sd ``seed_sd`` (measured elsewhere, ``what`` says where), for ``seeds`` runs
    per side."""
    extra = 2 * float(seed_sd) ** 2 / seeds
    where = (f" ({effect.se:.1f} from the images alone) and the seed-to-seed sd {seed_sd:.1f} {effect.unit} of "
             f"{what}, for each run" if what else "")
    return replace(effect, se=math.sqrt(effect.se ** 2 + extra), over=effect.over + where, df=None)


def verdict(effect: Effect, expected: int = 1) -> str:
    """HOLDS when the 95% interval excludes zero on the side of ``expected`` (+1 or -1), REVERSED on the other
    side, NOISE when it contains zero (or the error is unknown). ``expected=0`` (the paper claims no
    difference): SAME when the interval contains zero, DIFFERS when it does not."""
    if expected not in (1, -1, 0):
        raise ValueError(f"expected: +1 or -1 (the sign of the paper's effect) or 0 (no difference), got {expected!r}")
    lo, hi = effect.interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return NOISE
    if expected == 0:
        return SAME if lo <= 0 <= hi else DIFFERS
    if lo > 0:
        return HOLDS if expected == 1 else REVERSED
    if hi < 0:
        return HOLDS if expected == -1 else REVERSED
    return NOISE


def signed(value: float, digits: int = 1) -> str:
    """``+2.1`` / ``-0.4`` (a typographic minus), the way differences are written in the course."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", "\u2212")


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace("-", "\u2212")


def claim(what: str, effect: Effect, *, paper: Optional[str] = None, source: str = "The AugMax paper",
          expected: int = 1, why: Optional[Mapping[str, str]] = None, digits: int = 1) -> str:
    """One Markdown paragraph: what was measured, its size and 95% interval, the paper's statement, the verdict.

    ``what`` names the quantity ("AugMix's RA minus Normal's"); ``paper`` is what ``source`` reports, cited as
    its statement ("+14.7 points (poster, ResNet18, CIFAR-10)"); ``expected`` is the sign the effect has there;
    ``why`` maps a verdict (HOLDS, NOISE, REVERSED; SAME, DIFFERS for ``expected=0``) to the reason it comes out
    that way at this scale, and must give one for each verdict that contradicts the paper (NOISE and REVERSED;
    DIFFERS).
    """
    v = verdict(effect, expected)
    lo, hi = effect.interval
    unit = f" {effect.unit}" if effect.unit else ""
    if math.isfinite(effect.se):
        size = (f"**{signed(effect.value, digits)}{unit}** (standard error {_number(effect.se, digits)} over "
                f"{effect.over}; 95% interval {signed(lo, digits)} to {signed(hi, digits)})")
    else:
        size = f"**{signed(effect.value, digits)}{unit}** (no spread: a single {effect.over.rstrip('s')})"
    reasons = dict(why or {})
    needed = (DIFFERS,) if expected == 0 else (NOISE, REVERSED)
    missing = [k for k in needed if not reasons.get(k)]
    if missing:  # the numbers move between profiles and seeds: every outcome needs its explanation in advance
        raise ValueError(f"why: give the reason for each verdict that contradicts the paper at this scale; missing "
                         f"{missing} (this time the verdict is {v!r})")
    text = f"{what}: {size}."
    if paper:
        text += f" {source} reports {paper}."
    text += f" Verdict: **{v}**"
    reason = reasons.get(v, "")
    text += f": {reason}" if reason else "."
    if reason and not reason.rstrip().endswith((".", "!", "?")):
        text += "."
    return text


def show(*paragraphs: str) -> None:
    """Display Markdown paragraphs (claims, generated sentences) as rendered text, in a notebook and in the book."""
    from IPython.display import Markdown, display

    display(Markdown("\n\n".join(p for p in paragraphs if p)))

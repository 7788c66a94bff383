"""The verdicts a QA check can give, and the small rules that turn a number into one.

`insufficient`: the check had fewer images than it needs to tell a good set from a bad one at its
thresholds, and found no fail. It is never a pass: it ranks above a warning, so the pipeline's default
gate (`synthesis.qa_gate: fail`) stops on it too.

Every check computes what it needs by one rule (`images_to_separate`): the fewest images at which a set
with no defect and a set just at the check's warning threshold lie apart, their 95 % intervals on the
check's statistic not overlapping. Below that a pass cannot be told from a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

PASS, WARN, INSUFFICIENT, FAIL = "pass", "warn", "insufficient", "fail"
VERDICTS = (PASS, WARN, INSUFFICIENT, FAIL)          # in order of severity
Z_95 = 1.959964                                      # two-sided 95 % normal quantile
MOST_IMAGES = 10_000_000                             # "needs more than any folder holds"


def grade_above(value: float, warn_above: float, fail_above: float) -> str:
    """A verdict for a number where larger is worse (e.g. a flagged fraction)."""
    if value > fail_above:
        return FAIL
    return WARN if value > warn_above else PASS


def grade_below(value: float, warn_below: float, fail_below: float) -> str:
    """A verdict for a number where smaller is worse (e.g. a diversity ratio)."""
    if value < fail_below:
        return FAIL
    return WARN if value < warn_below else PASS


def worst(verdicts: Iterable[str]) -> str:
    """The most severe of several verdicts (pass when there are none)."""
    return max(verdicts, key=VERDICTS.index, default=PASS)


def needs_more(verdict: str, images: int, needed: int) -> str:
    """`verdict` judged on `images` when the check needs `needed`: a fail stands (a tell found on few
    images is a tell); a pass or a warning on too few images is `insufficient`."""
    return verdict if images >= needed or verdict == FAIL else INSUFFICIENT


def images_to_separate(standard_errors: Callable[[int], float], gap: float, z: float = Z_95) -> int:
    """The fewest images n (per set) with z * standard_errors(n) <= gap: two sets `gap` apart on a check's
    statistic, whose standard errors at n images sum to `standard_errors(n)` (a function decreasing in n),
    have non-overlapping z-intervals. `MOST_IMAGES` when no folder could be large enough."""
    fits = lambda n: z * standard_errors(n) <= gap
    if fits(2):
        return 2
    low, high = 2, 4                    # fits(low) is False; double high until it fits
    while not fits(high):
        if high >= MOST_IMAGES:
            return MOST_IMAGES
        low, high = high, min(2 * high, MOST_IMAGES)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def needed_text(needed: int) -> str:
    """How many images a check needs, in words."""
    return f"more than {MOST_IMAGES:,}" if needed >= MOST_IMAGES else f"{needed:,}"


def evidence(images: int, needed: int, unit: str) -> dict:
    """What a check had and what it needs, for the report: `unit` says what is counted."""
    return {"images": int(images), "needed": int(needed), "unit": unit}


def judge_evidence(verdict: str, reason: str, images: int, needed: int, unit: str) -> tuple[str, str]:
    """`needs_more`, with the reason saying why when the verdict became insufficient."""
    judged = needs_more(verdict, images, needed)
    if judged == verdict:
        return verdict, reason
    return judged, (f"{images:,} {unit}, and this check needs {needed_text(needed)} to tell a good set from a bad one "
                    f"at its thresholds; " + reason)

"""The three verdicts a QA check can give, and the small rules that turn a number into one."""

from __future__ import annotations

from collections.abc import Iterable

PASS, WARN, FAIL = "pass", "warn", "fail"
VERDICTS = (PASS, WARN, FAIL)          # in order of severity


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

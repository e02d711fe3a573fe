"""Score bins shared by scoring and selection: a (possibly expected) score's 1..5 bin and a histogram."""

from __future__ import annotations

import math

import polars as pl


def score_bin(score: float) -> int:
    """The 1..5 bin of a (possibly expected) score: nearest integer, halves rounded up."""
    return min(5, max(1, math.floor(score + 0.5)))


def histogram(scores: pl.Series) -> dict[str, int]:
    """Counts per 1..5 bin plus 'unparsed' (null scores)."""
    hist = {str(k): 0 for k in range(1, 6)}
    unparsed = 0
    for s in scores.to_list():
        if s is None or (isinstance(s, float) and math.isnan(s)):
            unparsed += 1
        else:
            hist[str(score_bin(s))] += 1
    hist["unparsed"] = unparsed
    return hist

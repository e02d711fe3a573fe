"""AlpacaEval-style win rates from per-prompt preferences p in [1, 2] (1 = reference wins, 2 = model wins)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def win_rate(
    preferences: Sequence[float],
    *,
    lengths: Sequence[float] | None = None,
    ref_lengths: Sequence[float] | None = None,
    length_controlled: bool = True,
) -> dict:
    """Win rate, its standard error, the discrete win rate and the length-controlled win rate.

    `lengths`/`ref_lengths` are the model's and the reference's output lengths per prompt (chars);
    without both, lc_win_rate and the average lengths are None. length_controlled=False skips the
    one-model LC fit (lc_win_rate None) where the joint fit of all models is reported instead.
    """
    p = _as_array(preferences, "preferences")
    if p.size == 0:
        raise ValueError("preferences: empty")
    if np.any((p < 1) | (p > 2)):
        raise ValueError("preferences: every value must lie in [1, 2]")
    soft = p - 1.0
    n = int(p.size)
    wins, draws = int(np.sum(p > 1.5)), int(np.sum(p == 1.5))
    losses = n - wins - draws
    out = {
        "win_rate": 100.0 * float(soft.mean()),
        # sem uses ddof=1; a single prompt has no spread to estimate
        "standard_error": 100.0 * float(stats.sem(soft)) if n > 1 else None,
        "discrete_win_rate": 100.0 * (wins + draws / 2) / n,
        "n_wins": wins,
        "n_draws": draws,
        "n_losses": losses,
        "n_total": n,
        "lc_win_rate": None,
        "avg_length": None,
        "reference_avg_length": None,
    }
    if lengths is not None and ref_lengths is not None:
        la, lr = _as_array(lengths, "lengths"), _as_array(ref_lengths, "ref_lengths")
        if la.size != n or lr.size != n:
            raise ValueError(f"lengths: expected {n} values each, got {la.size} and {lr.size}")
        out["avg_length"] = float(la.mean())
        out["reference_avg_length"] = float(lr.mean())
        if length_controlled:
            out["lc_win_rate"] = lc_win_rate(p, la, lr)
    return out


def length_feature(lengths: np.ndarray, ref_lengths: np.ndarray) -> np.ndarray:
    """tanh of the length difference scaled by its standard deviation (0 where all differences agree)."""
    diff = np.asarray(lengths, dtype=float) - np.asarray(ref_lengths, dtype=float)
    std = float(np.std(diff, ddof=1)) if diff.size > 1 else 0.0
    if std == 0 or not math.isfinite(std):
        return np.zeros_like(diff)
    return np.tanh(diff / std)


def lc_win_rate(preferences: Sequence[float], lengths: Sequence[float], ref_lengths: Sequence[float]) -> float:
    """Length-controlled win rate of one model alone: logistic regression of the preference on the
    length feature plus an intercept, predicted with the length term at 0, i.e. 100 * sigmoid(intercept).
    Not what the pipeline reports: without a per-instruction difficulty it cannot tell a hard prompt
    from a length effect; the reported LC is the joint fit of humpback.evaluation.length_controlled.

    Soft preferences are fitted as two weighted rows per prompt: target 1 with weight p-1 and target 0
    with weight 2-p, so the fit maximises the same likelihood as the soft targets themselves.
    """
    p = _as_array(preferences, "preferences")
    soft = p - 1.0
    if soft.sum() == 0 or soft.sum() == soft.size:  # all losses / all wins: the intercept is unbounded
        return 100.0 * float(soft.mean())
    x = length_feature(np.asarray(lengths, float), np.asarray(ref_lengths, float)).reshape(-1, 1)
    X = np.vstack([x, x])
    y = np.concatenate([np.ones(p.size), np.zeros(p.size)])
    w = np.concatenate([soft, 1.0 - soft])
    # A mild L2 penalty on the length slope keeps the fit finite when length separates wins from
    # losses perfectly; the intercept is not penalised by lbfgs.
    model = LogisticRegression(C=10.0, solver="lbfgs", max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y, sample_weight=w)
    return 100.0 / (1.0 + math.exp(-float(model.intercept_[0])))


def paired_bootstrap(preferences: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    """Win rate of a over b (percent) from per-prompt preferences p in [1, 2] (2 = a wins), and its
    percentile interval from resampling prompts with replacement: both models' answers to a prompt
    stay together, so the interval is the one of the paired difference.

    Returns win_rate, ci_low, ci_high, n, excludes_50 (50 lies outside the interval); a seed gives
    the same interval every run."""
    p = _as_array(preferences, "preferences")
    if p.size == 0:
        raise ValueError("preferences: empty")
    if np.any((p < 1) | (p > 2)):
        raise ValueError("preferences: every value must lie in [1, 2]")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"resamples must be >= 1 and confidence in (0, 1), got {resamples} and {confidence}")
    soft = p - 1.0
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # bounded memory for many prompts
        idx = rng.integers(0, soft.size, size=(min(256, resamples - start), soft.size))
        means[start:start + idx.shape[0]] = soft[idx].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = (100.0 * float(v) for v in np.percentile(means, [tail, 100 - tail]))
    return {"win_rate": 100.0 * float(soft.mean()), "ci_low": low, "ci_high": high, "n": int(soft.size),
            "excludes_50": bool(low > 50 or high < 50)}

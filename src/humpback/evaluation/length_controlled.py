"""Length-controlled win rates, the AlpacaEval 2 form, fitted jointly over every model of a run.

One logistic GLM over all (model m, instruction x) judgements against the reference:

    P(m beats the reference on x) = sigmoid(theta_m + phi_m * tanh(d_mx / sd_m) + psi_x)

d_mx = len_m,x - len_ref,x (characters), sd_m its standard deviation over m's instructions; psi_x
is the instruction's difficulty, one term per instruction shared by every model. The length-
controlled win rate is the prediction with the length term at 0, averaged over instructions:

    lc_win_rate_m = 100 * mean_x sigmoid(theta_m + psi_x)

Soft preferences p in [1, 2] enter as two weighted rows (target 1 with weight p - 1, target 0 with
weight 2 - p), as AlpacaEval fits them. The length slopes and the difficulties carry an L2 penalty
of strength 1/C (sklearn's C), which keeps the fit finite when length or an instruction separates
wins from losses; the model terms are scaled so their penalty is negligible (THETA_SCALE), so the
fit keeps each model's mean predicted preference at its raw win rate and the reference judged
against itself (all ties, equal lengths) gets theta 0 and 50.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import polars as pl
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from humpback.evaluation.metrics import length_feature

FORMULA = ("P(model m beats the reference on instruction x) = sigmoid(theta_m + phi_m * tanh((len_m,x - len_ref,x) "
           "/ sd_m) + psi_x), fitted jointly over all models (psi_x shared), L2 on phi and psi (C = regularization); "
           "lc_win_rate_m = 100 * mean_x sigmoid(theta_m + psi_x)")
# The model columns are multiplied by this, so their coefficient's L2 penalty is THETA_SCALE**2 weaker.
THETA_SCALE = 100.0
COLUMNS = ("prompt_id", "preference", "length", "reference_length")


def bad_row(df: pl.DataFrame) -> tuple[int, str] | None:
    """(row, what is wrong) of the first judgement the fit cannot use, or None."""
    seen = set()
    for i, row in enumerate(df.select(COLUMNS).iter_rows(named=True)):
        if row["prompt_id"] in seen:
            return i, f"prompt_id {row['prompt_id']!r:.40} is judged twice"
        seen.add(row["prompt_id"])
        p = row["preference"]
        if not isinstance(p, int | float) or not 1 <= p <= 2:  # NaN fails the comparison too
            return i, f"preference must be a number in [1, 2], got {p!r:.40}"
        for key in ("length", "reference_length"):
            if not isinstance(row[key], int | float) or not 0 <= row[key] < float("inf"):
                return i, f"{key} must be a non-negative number, got {row[key]!r:.40}"
        if not isinstance(row["prompt_id"], str | int) or row["prompt_id"] == "":
            return i, f"prompt_id must be a non-empty string, got {row['prompt_id']!r:.40}"
    return None


def fit_length_controlled(judgements: Mapping[str, pl.DataFrame], *, regularization: float = 10.0) -> dict:
    """{"models": {m: {"lc_win_rate", "win_rate", "model_coef", "length_coef", "n", "lc_preferences":
    {prompt_id: P at length difference 0}}}, "difficulty": {prompt_id: psi_x}, "instructions": n}.

    `judgements` maps a model's name to its judgements (COLUMNS); every model may have its own
    instructions, the difficulty of an instruction is shared by all models that have it."""
    if not judgements:
        raise ValueError("no judgements to fit")
    names = list(judgements)
    prompts = sorted({p for df in judgements.values() for p in df["prompt_id"].to_list()})
    col = {p: i for i, p in enumerate(prompts)}
    n_models, n_prompts = len(names), len(prompts)
    blocks, targets, weights = [], [], []
    for m, name in enumerate(names):
        df = judgements[name]
        p = df["preference"].cast(pl.Float64).to_numpy()
        if p.size == 0:
            raise ValueError(f"{name}: no judgements")
        if np.any(~np.isfinite(p)) or np.any((p < 1) | (p > 2)):
            raise ValueError(f"{name}: every preference must lie in [1, 2]")
        x = np.zeros((p.size, 2 * n_models + n_prompts))
        x[:, m] = THETA_SCALE
        x[:, n_models + m] = length_feature(df["length"].to_numpy(), df["reference_length"].to_numpy())
        x[np.arange(p.size), 2 * n_models + np.array([col[q] for q in df["prompt_id"].to_list()])] = 1.0
        blocks += [x, x]
        targets += [np.ones(p.size), np.zeros(p.size)]
        weights += [p - 1.0, 2.0 - p]
    X, y, w = np.vstack(blocks), np.concatenate(targets), np.concatenate(weights)
    keep = w > 0  # a row of weight 0 adds nothing; the fit also needs both classes present
    # Newton steps reach the optimum to the last digits whatever the BLAS; lbfgs stopped near it at a
    # point that moved in the fifth digit of the rate between CPUs (THETA_SCALE makes the problem stiff)
    glm = LogisticRegression(C=regularization, fit_intercept=False, solver="newton-cholesky", max_iter=1_000,
                             tol=1e-10)
    if len(set(y[keep])) < 2:  # every judgement a win (or a loss): no finite fit, the rate is exact
        glm = None
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            glm.fit(X[keep], y[keep], sample_weight=w[keep])
    coef = glm.coef_[0] if glm is not None else np.zeros(X.shape[1])
    theta, phi, psi = coef[:n_models] * THETA_SCALE, coef[n_models:2 * n_models], coef[2 * n_models:]
    models = {}
    for m, name in enumerate(names):
        df = judgements[name]
        raw = 100.0 * float((df["preference"].cast(pl.Float64).to_numpy() - 1.0).mean())
        ids = df["prompt_id"].to_list()
        if glm is None:
            lc_prefs = {q: raw / 100.0 for q in ids}
        else:
            lc_prefs = {q: float(1.0 / (1.0 + np.exp(-(theta[m] + psi[col[q]])))) for q in ids}
        models[name] = {
            "lc_win_rate": 100.0 * float(np.mean(list(lc_prefs.values()))),
            "win_rate": raw,
            "model_coef": float(theta[m]),
            "length_coef": float(phi[m]),
            "n": int(df.height),
            "lc_preferences": lc_prefs,
        }
    return {"models": models, "difficulty": {p: float(psi[i]) for i, p in enumerate(prompts)},
            "instructions": n_prompts}

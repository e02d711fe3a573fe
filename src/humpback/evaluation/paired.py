"""Consecutive models head to head: each model of eval.models against the one before it, on the
same prompts, in both orders, with the judge of the judge stage; a paired bootstrap interval says
whether "it2 beat it1" is a claim (the interval excludes 50) or noise."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from humpback.errors import EmptyResultError
from humpback.evaluation.judge import pair_outputs
from humpback.evaluation.metrics import paired_bootstrap


def consecutive_pairs(models: list[str]) -> list[tuple[str, str]]:
    """(a, b) with a the later model: [base, m0, it1, it2] -> (m0, base), (it1, m0), (it2, it1)."""
    return [(models[i], models[i - 1]) for i in range(1, len(models))]


def comparison_name(a: str, b: str) -> str:
    return f"{a}_vs_{b}"


def head_to_head(a_outputs: pl.DataFrame, b_outputs: pl.DataFrame, *, a_path: Path, b_path: Path) -> pl.DataFrame:
    """Pairs for PairwiseJudge.judge: a's answer as `output`, b's answer to the same instruction as
    `reference_output`; prompts b did not answer are left out (with an error when none is left)."""
    b = b_outputs.select("instruction", "output", pl.lit("").alias("generator"))
    pairs, _missing = pair_outputs(a_outputs, b)
    if pairs.height == 0:
        raise EmptyResultError(f"{b_path}: no answer matches any instruction of {a_path}")
    return pairs


def comparison(judgements: pl.DataFrame, a: str, b: str, *, resamples: int, seed: int) -> dict:
    """One entry of metrics/eval/paired.json: a over b in percent with its paired bootstrap interval."""
    boot = paired_bootstrap(judgements["preference"].to_list(), resamples=resamples, seed=seed)
    methods = pl.concat([judgements["method_model_first"], judgements["method_model_second"]])
    return {"a": a, "b": b, **boot,
            "n_identical": int((judgements["method_model_first"] == "identical").sum()),
            "unparsed_verdicts": int((methods == "unparsed").sum())}

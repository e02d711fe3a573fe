"""Self-curation, selection half: keep the pairs rated at or above the threshold (A_k in the paper),
or every pair (no curation); optionally a random subsample of N of them (data scaling)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from humpback.curation.bins import histogram
from humpback.curation.config import SelectConfig
from humpback.errors import EmptyResultError
from humpback.io import atomic_path, write_json
from humpback.readers import read_table

SCORE_COLUMNS = ["segment_id", "instruction", "output", "score"]
# Parquet metadata key of a curated table drawn with select.sample: train@ reads N from it to pick
# the paper's batch and steps for N (stages/train.py), so it needs no select params of its own.
SAMPLE_KEY = "humpback.sample"


def select(scored: pl.DataFrame, cfg: SelectConfig, *, source: str = "scores") -> pl.DataFrame:
    """Rows with score >= threshold (unparsed rows never pass), best first if capped by
    max_examples or top_share (a share of the rows with a score); every row when curate is false.
    Then, if sample > 0, a seeded random subsample of exactly that many of them.

    Output columns: instruction, output, segment_id, score (null where unscored); in segment order
    unless capped.
    """
    kept = _curate(scored, cfg, source) if cfg.curate else scored
    if cfg.sample > 0:
        kept = _subsample(kept, cfg, source, scored.height)
    return kept.select(pl.col("instruction"), pl.col("output"), pl.col("segment_id"),
                       pl.col("score").cast(pl.Float64).fill_nan(None))


def _curate(scored: pl.DataFrame, cfg: SelectConfig, source: str) -> pl.DataFrame:
    valid = scored.filter(pl.col("score").is_not_null() & ~pl.col("score").is_nan())
    kept = valid.filter(pl.col("score") >= cfg.threshold)
    caps = [cfg.max_examples] if cfg.max_examples > 0 else []
    if cfg.top_share > 0:
        caps.append(math.ceil(cfg.top_share * valid.height))
    if caps and kept.height > min(caps):
        kept = kept.sort(["score", "segment_id"], descending=[True, False]).head(min(caps))
    if kept.height == 0 and not cfg.allow_empty:
        valid = scored["score"].drop_nulls().drop_nans()
        seen = f"scores seen range {valid.min():.3g}..{valid.max():.3g}" if valid.len() else "no row has a parsed score"
        raise EmptyResultError(
            f"{source}: threshold {cfg.threshold:g} keeps no pair out of {scored.height} ({seen}); "
            "lower select.threshold or set select.allow_empty: true"
        )
    return kept


def _subsample(kept: pl.DataFrame, cfg: SelectConfig, source: str, n: int) -> pl.DataFrame:
    """Exactly cfg.sample rows drawn uniformly (not the best ones), in the order they were kept."""
    if kept.height < cfg.sample:
        rules = (f"threshold {cfg.threshold:g}, top_share {cfg.top_share:g}, max_examples {cfg.max_examples}"
                 if cfg.curate else "curate: false")
        raise EmptyResultError(
            f"{source}: select.sample is {cfg.sample} but only {kept.height} of {n} pairs were kept ({rules}); "
            "lower select.sample or keep more pairs"
        )
    rows = np.random.default_rng(cfg.seed).choice(kept.height, size=cfg.sample, replace=False)
    return kept[np.sort(rows)]


def run_select(scores_path: str | Path, cfg: SelectConfig, *, curated_path: str | Path, metrics_path: str | Path) -> dict:
    scored = read_table(scores_path, SCORE_COLUMNS)
    scored = scored.with_columns(pl.col("score").cast(pl.Float64))
    kept = select(scored, cfg, source=str(scores_path))
    n = scored.height
    unparsed = scored["score"].is_null().sum() + scored["score"].is_nan().sum()
    valid_kept = kept["score"].drop_nulls()
    metrics = {
        "mode": scored["mode"][0] if "mode" in scored.columns else None,
        "curate": cfg.curate,  # false: every candidate kept, scored or not ("no curation")
        "threshold": cfg.threshold,
        "max_examples": cfg.max_examples,
        "top_share": cfg.top_share,
        "sample": cfg.sample,  # > 0: a random subsample of this many kept pairs (seed sample_seed)
        "sample_seed": cfg.seed,
        "n": n,
        "kept": kept.height,
        "kept_share": round(kept.height / n, 4),
        "kept_unscored": kept.height - valid_kept.len(),
        "parse_failures": int(unparsed),
        "histogram": histogram(scored["score"]),
        "kept_mean_score": round(float(valid_kept.mean()), 4) if valid_kept.len() else None,
    }
    with atomic_path(curated_path) as tmp:
        kept.write_parquet(tmp, metadata={SAMPLE_KEY: str(cfg.sample)} if cfg.sample else None)
    write_json(metrics, metrics_path)
    return metrics

"""Self-curation, selection half: keep the pairs rated at or above the threshold (A_k in the paper)."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from humpback.curation.bins import histogram
from humpback.curation.config import SelectConfig
from humpback.errors import EmptyResultError
from humpback.io import write_json, write_parquet
from humpback.readers import read_table

SCORE_COLUMNS = ["segment_id", "instruction", "output", "score"]


def select(scored: pl.DataFrame, cfg: SelectConfig, *, source: str = "scores") -> pl.DataFrame:
    """Rows with score >= threshold (unparsed rows never pass), best first if capped by
    max_examples or top_share (a share of the rows with a score).

    Output columns: instruction, output, segment_id, score; in segment order unless capped.
    """
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
    return kept.select(pl.col("instruction"), pl.col("output"), pl.col("segment_id"), pl.col("score").cast(pl.Float64))


def run_select(scores_path: str | Path, cfg: SelectConfig, *, curated_path: str | Path, metrics_path: str | Path) -> dict:
    scored = read_table(scores_path, SCORE_COLUMNS)
    scored = scored.with_columns(pl.col("score").cast(pl.Float64))
    kept = select(scored, cfg, source=str(scores_path))
    n = scored.height
    unparsed = scored["score"].is_null().sum() + scored["score"].is_nan().sum()
    metrics = {
        "mode": scored["mode"][0] if "mode" in scored.columns else None,
        "threshold": cfg.threshold,
        "max_examples": cfg.max_examples,
        "top_share": cfg.top_share,
        "n": n,
        "kept": kept.height,
        "kept_share": round(kept.height / n, 4),
        "parse_failures": int(unparsed),
        "histogram": histogram(scored["score"]),
        "kept_mean_score": round(float(kept["score"].mean()), 4) if kept.height else None,
    }
    write_parquet(kept, curated_path)
    write_json(metrics, metrics_path)
    return metrics

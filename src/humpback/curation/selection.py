"""Self-curation, selection half: keep the pairs rated at or above the threshold (A_k in the paper),
or every pair (no curation); optionally a random subsample of N of them (data scaling)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import polars as pl

from humpback.curation.bins import histogram
from humpback.curation.config import SelectConfig
from humpback.errors import EmptyResultError, InputError
from humpback.io import atomic_path, write_json
from humpback.readers import is_parquet, iter_records, read_table

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


# Why select keeps or drops a scored row (explain): one code per rule of `select`, in the order it applies them.
KEPT, UNPARSED, BELOW_THRESHOLD, BEYOND_CAP, NOT_SAMPLED = "kept", "unparsed", "below_threshold", "beyond_cap", "not_sampled"


def explain(scored: pl.DataFrame, cfg: SelectConfig, *, source: str = "scores") -> pl.DataFrame:
    """Every row of `scored` with the verdict `select` gives it under `cfg` and the rule behind it:
    columns segment_id, kept (bool), reason (KEPT, UNPARSED, BELOW_THRESHOLD, BEYOND_CAP or NOT_SAMPLED)
    and detail (the numbers of that rule). It runs the same `_curate` and `_subsample`, so its kept
    rows are exactly select's."""
    if scored["segment_id"].is_duplicated().any():
        raise InputError(source, "duplicate segment_id: a row's verdict would be ambiguous")
    cfg = dataclasses.replace(cfg, allow_empty=True)  # select refused an empty result already; here it is a verdict
    passed = _curate(scored, cfg, source) if cfg.curate else scored
    final = _subsample(passed, cfg, source, scored.height) if cfg.sample > 0 else passed
    score = pl.col("score").cast(pl.Float64).fill_nan(None)
    n_valid = scored["score"].cast(pl.Float64).fill_nan(None).drop_nulls().len()
    caps = [f"max_examples {cfg.max_examples}"] if cfg.max_examples > 0 else []
    if cfg.top_share > 0:
        caps.append(f"top_share {cfg.top_share:g} of {n_valid} scored = {math.ceil(cfg.top_share * n_valid)}")
    kept_detail = (f"score >= threshold {cfg.threshold:g}" + (f" and among the best ({', '.join(caps)})" if caps else "")
                   if cfg.curate else "select.curate is false: every candidate kept")
    if cfg.sample > 0:
        kept_detail += f"; drawn in the random sample of {cfg.sample} (seed {cfg.seed})"
    in_final = pl.col("segment_id").is_in(final["segment_id"].implode())
    in_passed = pl.col("segment_id").is_in(passed["segment_id"].implode())
    return scored.select(
        pl.col("segment_id"),
        in_final.alias("kept"),
        pl.when(in_final).then(pl.lit(KEPT))
        .when(in_passed).then(pl.lit(NOT_SAMPLED))
        .when(score.is_null()).then(pl.lit(UNPARSED))
        .when(score < cfg.threshold).then(pl.lit(BELOW_THRESHOLD))
        .otherwise(pl.lit(BEYOND_CAP)).alias("reason"),
    ).with_columns(pl.col("reason").replace_strict({
        KEPT: kept_detail,
        NOT_SAMPLED: f"passed the threshold and caps but not drawn in the random sample of {cfg.sample} "
                     f"(seed {cfg.seed}) out of {passed.height}",
        UNPARSED: "no rating parsed: an unscored row is never kept",
        BELOW_THRESHOLD: f"score < threshold {cfg.threshold:g}",
        BEYOND_CAP: f"score >= threshold {cfg.threshold:g} but not among the best ({', '.join(caps)})",
    }, return_dtype=pl.String).alias("detail"))


def _score_fault(value) -> str | None:
    """Why a score cell is not a rating the score stage could have written; None when it is one."""
    if value is None:  # an unparsed rating: never kept by a threshold
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"'score' must be a number in [1, 5] or null (unparsed), got {type(value).__name__}: {value!r:.60}"
    if not math.isfinite(value):
        return f"'score' must be a number in [1, 5] or null (unparsed), got {value!r}"
    if not 1.0 <= value <= 5.0:
        return f"'score' {value:g} is out of the rubric's range [1, 5]"
    return None


def _text_fault(data: dict) -> str | None:
    """A JSONL record's instruction or output that is not text (polars would turn a number into one)."""
    for col in ("instruction", "output"):
        if data[col] is not None and not isinstance(data[col], str):
            return f"'{col}' must be a string, got {type(data[col]).__name__}: {data[col]!r:.60}"
    return None


def _check_text(df: pl.DataFrame, path: Path) -> None:
    for col in ("instruction", "output"):
        if df[col].dtype not in (pl.String, pl.Null):
            raise InputError(path, f"column '{col}' must hold strings, it holds {df[col].dtype}")
        nulls = df[col].is_null()
        if nulls.any():
            raise InputError(path, f"'{col}' is null", f"row {int(nulls.arg_max())}")


def read_scores(path: str | Path) -> pl.DataFrame:
    """The score stage's table (Parquet, or JSONL), checked: every score is a number in [1, 5] or
    null. A string, list, bool, NaN, infinite or out-of-range score is an InputError naming the file
    and the row (rows from 0, as in Parquet), never a silent keep or drop."""
    path = Path(path)
    if not is_parquet(path):
        rows = []
        for rec in iter_records(path, SCORE_COLUMNS):
            data = rec.strict()
            fault = _score_fault(data["score"]) or _text_fault(data)
            if fault is not None:
                raise InputError(path, fault, rec.label)
            rows.append(data | {"score": None if data["score"] is None else float(data["score"])})
        try:
            scored = pl.DataFrame(rows, schema_overrides={"score": pl.Float64}, infer_schema_length=None)
        except (pl.exceptions.PolarsError, TypeError, ValueError) as e:
            raise InputError(path, f"columns of mixed types ({type(e).__name__}: {e})") from None
        _check_text(scored, path)
        return scored
    scored = read_table(path, SCORE_COLUMNS)
    score = scored["score"]
    if score.dtype == pl.Null:  # no row has a score: every rating unparsed
        return scored.with_columns(pl.col("score").cast(pl.Float64))
    if not score.dtype.is_numeric():
        first = int(score.is_not_null().arg_max()) if score.null_count() < score.len() else 0
        raise InputError(path, f"column 'score' must hold numbers in [1, 5] or null (unparsed), it holds "
                               f"{score.dtype}: {score.slice(first, 1).to_list()[0]!r:.60}", f"row {first}")
    as_float = score.cast(pl.Float64)
    bad = as_float.is_not_null() & (as_float.is_nan() | (as_float < 1.0) | (as_float > 5.0))  # inf is > 5 or < 1
    if bad.any():
        row = int(bad.arg_max())
        raise InputError(path, _score_fault(as_float[row]) or "bad score", f"row {row}")
    _check_text(scored, path)
    return scored.with_columns(as_float)


def run_select(scores_path: str | Path, cfg: SelectConfig, *, curated_path: str | Path, metrics_path: str | Path) -> dict:
    scored = read_scores(scores_path)
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

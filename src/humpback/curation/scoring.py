"""Self-curation, scoring half: the previous model rates every candidate pair on the 5-point rubric.

Two modes (ScoreConfig.mode): `generate` reads "Score: <n>" out of the judge's reasoning with
`parse_score`; `logprob` forces the reply to start with "Score: " and reads the next-token
distribution over the digits 1-5 in one forward pass.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from humpback.chunks import ENGINE_UNRECORDED, engine_settings, model_identity, process_in_chunks, record
from humpback.curation.bins import histogram
from humpback.curation.config import ScoreConfig
from humpback.curation.parse import parse_score
from humpback.engines.base import Engine
from humpback.engines.config import EngineConfig
from humpback.errors import ConfigError
from humpback.io import write_json
from humpback.prompts import SCORE_PREFIX, PromptsConfig, curation_messages
from humpback.readers import read_table

DIGITS = ["1", "2", "3", "4", "5"]
CANDIDATE_COLUMNS = ["segment_id", "instruction", "output"]

SCORE_SCHEMA = {
    "segment_id": pl.String,
    "instruction": pl.String,
    "output": pl.String,
    "score": pl.Float64,  # generate: the parsed integer; logprob: the expected score; null = unparsed
    "score_int": pl.Int64,  # generate: the parsed integer; logprob: the most likely digit
    "digit_mass": pl.Float64,  # logprob: total probability of the five digits after "Score: "
    "raw": pl.String,  # generate: the judge's text
    "mode": pl.String,
}


@dataclasses.dataclass
class DigitScore:
    expected: float | None  # sum_k k * p(k), p renormalised over the five digits
    argmax: int | None
    mass: float  # sum_k p(k) before renormalising: how much the model wanted to answer with a digit


def expected_score(logprobs: Mapping[str, float]) -> DigitScore:
    """Expected score, argmax and digit mass from log-probabilities of "1".."5" (-inf = unseen)."""
    lps = [float(logprobs.get(d, -math.inf)) for d in DIGITS]
    top = max(lps)
    if top == -math.inf or math.isnan(top):
        return DigitScore(None, None, 0.0)
    # subtract the max before exp so that very negative log-probs do not underflow to 0/0
    weights = [math.exp(lp - top) for lp in lps]
    total = sum(weights)
    expected = sum((k + 1) * w for k, w in enumerate(weights)) / total
    argmax = lps.index(top) + 1  # ties go to the lower score
    mass = math.exp(top) * total
    return DigitScore(expected, argmax, mass)


def _requests(df: pl.DataFrame, prompts: PromptsConfig, mode: str) -> list:
    return [curation_messages(prompts, i, o, mode) for i, o in zip(df["instruction"], df["output"], strict=True)]


def score_chunk(df: pl.DataFrame, i: int, engine: Engine, cfg: ScoreConfig, prompts: PromptsConfig) -> pl.DataFrame:
    """Score one chunk of candidates; returns the rows with the SCORE_SCHEMA columns."""
    requests = _requests(df, prompts, cfg.mode)
    if cfg.mode == "generate":
        raw = engine.generate(requests, cfg.sampling.at(cfg.seed + i), desc=f"score chunk {i}")
        ints = [parse_score(t) for t in raw]
        cols = {"score": [None if s is None else float(s) for s in ints], "score_int": ints,
                "digit_mass": [None] * len(ints), "raw": raw}
    else:
        lps = engine.choice_logprobs(requests, DIGITS, assistant_prefix=SCORE_PREFIX, desc=f"score chunk {i}")
        ds = [expected_score(lp) for lp in lps]
        cols = {"score": [d.expected for d in ds], "score_int": [d.argmax for d in ds],
                "digit_mass": [d.mass for d in ds], "raw": [None] * len(ds)}
    out = df.select(CANDIDATE_COLUMNS).with_columns(
        *(pl.Series(k, v, dtype=SCORE_SCHEMA[k]) for k, v in cols.items()),
        pl.lit(cfg.mode, dtype=pl.String).alias("mode"),
    )
    return out.select(list(SCORE_SCHEMA))


def score_metrics(scored: pl.DataFrame, mode: str, seconds: float) -> dict:
    n = scored.height
    parsed = scored["score"].drop_nulls()
    failures = n - parsed.len()
    metrics = {
        "mode": mode,
        "n": n,
        "parse_failures": failures,
        "parse_failure_rate": round(failures / n, 4) if n else 0.0,
        "histogram": histogram(scored["score"]),
        "mean": round(float(parsed.mean()), 4) if parsed.len() else None,
        "seconds": round(seconds, 1),
    }
    if mode == "logprob":
        mass = scored["digit_mass"].drop_nulls()
        metrics["mean_digit_mass"] = round(float(mass.mean()), 4) if mass.len() else None
        metrics["argmax_histogram"] = histogram(scored["score_int"].cast(pl.Float64))
    return metrics


# Params that cannot change the chunk parts, each with the reason (see tests/test_fingerprints.py).
UNRECORDED = {
    "prompts.seed_tag": "not in the rating prompt",
    "prompts.augmented_tag": "not in the rating prompt",
    "prompts.inference_system": "not in the rating prompt",
    "prompts.backward_template": "not in the rating prompt",
} | ENGINE_UNRECORDED
# Each mode asks for its own reply format (prompts.CURATION_ASK_KEY); the other mode's is not sent.
GENERATE_UNRECORDED = {
    "prompts.curation_ask_score": "logprob mode's reply format; generate mode asks prompts.curation_ask_reasoning",
}
# In logprob mode the digits are read in one forward pass: nothing is sampled.
LOGPROB_UNRECORDED = {
    "score.sampling": "logprob mode samples nothing: one forward pass reads the digits",
    "score.seed": "logprob mode samples nothing: one forward pass reads the digits",
    "prompts.curation_ask_reasoning": "generate mode's reply format; logprob mode asks prompts.curation_ask_score",
}


def score_unrecorded(cfg: ScoreConfig) -> dict[str, str]:
    """The allow-list for this mode: params that cannot change the scores, with the reason."""
    return UNRECORDED | (LOGPROB_UNRECORDED if cfg.mode == "logprob" else GENERATE_UNRECORDED)


def score_settings(cfg: ScoreConfig, prompts: PromptsConfig, engine_cfg: EngineConfig, model_dir: str | Path) -> dict:
    """What the scores depend on besides the candidates and the chunking."""
    # chunk_size is recorded by process_in_chunks itself
    sections = record({"score": cfg, "prompts": prompts}, score_unrecorded(cfg).keys() | {"score.chunk_size"})
    return {**sections, "prefix": SCORE_PREFIX, "engine": engine_settings(engine_cfg),
            "model": model_identity(model_dir, engine_cfg)}


def run_score(
    candidates_path: str | Path, engine: Engine, cfg: ScoreConfig, prompts: PromptsConfig, *,
    scores_path: str | Path, metrics_path: str | Path, engine_cfg: EngineConfig, model_dir: str | Path,
) -> dict:
    """Rate every candidate; write the scores table and its metrics (resumable in chunks)."""
    start = time.perf_counter()
    for key, problem in prompts.problems():  # the params check's rule, for a config built in code
        raise ConfigError(f"prompts.{key}: {problem}")
    cands = read_table(candidates_path, CANDIDATE_COLUMNS).select(
        pl.col("segment_id").cast(pl.String), pl.col("instruction").cast(pl.String), pl.col("output").cast(pl.String)
    )
    scored = process_in_chunks(
        cands, scores_path, lambda df, i: score_chunk(df, i, engine, cfg, prompts),
        chunk_size=cfg.chunk_size, settings=score_settings(cfg, prompts, engine_cfg, model_dir),
        desc=f"score ({cfg.mode})",
    )
    metrics = score_metrics(scored, cfg.mode, time.perf_counter() - start)
    metrics["model"] = str(model_dir)
    write_json(metrics, metrics_path)
    return metrics

"""Self-curation, scoring half: the previous model rates every candidate pair on the 5-point rubric.

Two modes (ScoreConfig.mode): `generate` rates each pair `samples` times (a brief reasoning, then
"Score: <n>", read with `parse_score`) and keeps the mean of the parsed ratings; `logprob` forces the
reply to start with "Score: " and reads the next-token distribution over the digits 1-5 in one
forward pass.

A backend without log-probabilities (an endpoint whose replies carry none) is found out by a
one-pair probe before any chunk is written, and the whole run then scores in generate mode. The mode
used is what the chunk fingerprint records and what every row says, so parts written by such a run
are never taken for a logprob run's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from humpback.chunks import ENGINE_UNRECORDED, engine_settings, model_identity, process_in_chunks, record
from humpback.curation.bins import histogram, score_bin
from humpback.curation.config import ScoreConfig
from humpback.curation.parse import parse_score
from humpback.engines.base import Engine
from humpback.engines.config import EngineConfig
from humpback.errors import ConfigError
from humpback.io import write_json
from humpback.prompts import SCORE_PREFIX, PromptsConfig, curation_messages
from humpback.readers import read_table

log = logging.getLogger(__name__)

DIGITS = ["1", "2", "3", "4", "5"]
CANDIDATE_COLUMNS = ["segment_id", "instruction", "output"]

SCORE_SCHEMA = {
    "segment_id": pl.String,
    "instruction": pl.String,
    "output": pl.String,
    "score": pl.Float64,  # generate: the mean of the parsed ratings; logprob: the expected score; null = none
    "score_int": pl.Int64,  # generate: the score's 1..5 bin (halves up); logprob: the most likely digit
    "digit_mass": pl.Float64,  # logprob: total probability of the five digits after "Score: "
    "ratings": pl.List(pl.Float64),  # generate: each sample's parsed rating, null where it did not parse
    "raw": pl.List(pl.String),  # generate: each sample's text, in the order of `ratings`
    "mode": pl.String,  # the mode used: generate where a logprob run fell back
}


@dataclasses.dataclass
class DigitScore:
    expected: float | None  # sum_k k * p(k), p renormalised over the five digits
    argmax: int | None
    mass: float  # sum_k p(k) before renormalising: how much the model wanted to answer with a digit


def expected_score(logprobs: Mapping[str, float]) -> DigitScore:
    """Expected score, argmax and digit mass from log-probabilities of "1".."5" (-inf = unseen)."""
    # a NaN or positive log-probability (a broken endpoint) is no evidence: such a digit counts as unseen
    lps = [lp if lp <= 0.0 else -math.inf for lp in (float(logprobs.get(d, -math.inf)) for d in DIGITS)]
    top = max(lps)
    if top == -math.inf:
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


def sample_seed(cfg: ScoreConfig, chunk: int, sample: int) -> int:
    """Chunk i's sample j: distinct for every (i, j) of a run, and seed + i when samples is 1."""
    return cfg.seed + chunk * cfg.samples + sample


def mean_rating(ratings: list[float | None]) -> float | None:
    parsed = [r for r in ratings if r is not None]
    return statistics.fmean(parsed) if parsed else None


def score_chunk(df: pl.DataFrame, i: int, engine: Engine, cfg: ScoreConfig, prompts: PromptsConfig) -> pl.DataFrame:
    """Score one chunk of candidates; returns the rows with the SCORE_SCHEMA columns."""
    requests = _requests(df, prompts, cfg.mode)
    if cfg.mode == "generate":
        # one call per sample: a call samples with one seed, and engines that seed each request
        # (vLLM, an endpoint) would give the same text to copies of a request within a call
        per_sample = []
        for j in range(cfg.samples):
            desc = f"score chunk {i}" if cfg.samples == 1 else f"score chunk {i} sample {j + 1}/{cfg.samples}"
            per_sample.append(engine.generate(requests, cfg.sampling.at(sample_seed(cfg, i, j)), desc=desc))
        raw = [list(texts) for texts in zip(*per_sample, strict=True)]  # per pair, in sample order
        ratings = [[parse_score(t) for t in texts] for texts in raw]
        scores = [mean_rating(r) for r in ratings]
        cols = {"score": scores, "score_int": [None if s is None else score_bin(s) for s in scores],
                "digit_mass": [None] * len(raw), "ratings": ratings, "raw": raw}
    else:
        lps = engine.choice_logprobs(requests, DIGITS, assistant_prefix=SCORE_PREFIX, desc=f"score chunk {i}")
        ds = [expected_score(lp) for lp in lps]
        cols = {"score": [d.expected for d in ds], "score_int": [d.argmax for d in ds],
                "digit_mass": [d.mass for d in ds], "ratings": [None] * len(ds), "raw": [None] * len(ds)}
    out = df.select(CANDIDATE_COLUMNS).with_columns(
        *(pl.Series(k, v, dtype=SCORE_SCHEMA[k]) for k, v in cols.items()),
        pl.lit(cfg.mode, dtype=pl.String).alias("mode"),
    )
    return out.select(list(SCORE_SCHEMA))


def score_metrics(scored: pl.DataFrame, cfg: ScoreConfig, seconds: float) -> dict:
    """Counts of a scored table; `cfg` is the configuration the rows were scored with (its mode used)."""
    n = scored.height
    parsed = scored["score"].drop_nulls()
    failures = n - parsed.len()
    metrics = {
        "mode": cfg.mode,
        "n": n,
        "parse_failures": failures,
        "parse_failure_rate": round(failures / n, 4) if n else 0.0,
        "histogram": histogram(scored["score"]),
        "mean": round(float(parsed.mean()), 4) if parsed.len() else None,
        "seconds": round(seconds, 1),
    }
    if cfg.mode == "logprob":
        mass = scored["digit_mass"].drop_nulls()
        metrics["mean_digit_mass"] = round(float(mass.mean()), 4) if mass.len() else None
        metrics["argmax_histogram"] = histogram(scored["score_int"].cast(pl.Float64))
    else:
        per_pair = scored["ratings"].list.drop_nulls().list.len()  # parsed samples of each pair
        total = n * cfg.samples
        metrics["samples"] = cfg.samples
        metrics["ratings_parsed"] = int(per_pair.sum())
        metrics["rating_parse_failure_rate"] = round(1 - metrics["ratings_parsed"] / total, 4) if total else 0.0
        # pairs by how many of their samples parsed: "0" are the pairs without a score
        metrics["pairs_by_ratings_parsed"] = {str(k): int((per_pair == k).sum()) for k in range(cfg.samples + 1)}
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
    "score.samples": "logprob mode reads the digits' probabilities once: there is nothing to repeat",
    "prompts.curation_ask_reasoning": "generate mode's reply format; logprob mode asks prompts.curation_ask_score",
}


def score_unrecorded(cfg: ScoreConfig) -> dict[str, str]:
    """The allow-list for this mode: params that cannot change the scores, with the reason.

    `cfg.mode` is the mode used: after a fallback, generate's list applies."""
    return UNRECORDED | (LOGPROB_UNRECORDED if cfg.mode == "logprob" else GENERATE_UNRECORDED)


def score_settings(cfg: ScoreConfig, prompts: PromptsConfig, engine_cfg: EngineConfig, model_dir: str | Path) -> dict:
    """What the scores depend on besides the candidates and the chunking (`cfg.mode`: the mode used)."""
    # chunk_size is recorded by process_in_chunks itself
    sections = record({"score": cfg, "prompts": prompts}, score_unrecorded(cfg).keys() | {"score.chunk_size"})
    return {**sections, "prefix": SCORE_PREFIX, "engine": engine_settings(engine_cfg),
            "model": model_identity(model_dir, engine_cfg)}


def usable_mode(engine: Engine, cfg: ScoreConfig, prompts: PromptsConfig, cands: pl.DataFrame) -> tuple[str, str | None]:
    """The mode this run scores in, and why it is not cfg.mode (None when it is).

    A logprob run asks the engine for one pair's digit probabilities before any chunk is written:
    a backend without them raises NotImplementedError, an endpoint that returns no logprobs
    LogprobsUnsupported (a subclass). Then the run is a generate run from its first chunk on,
    fingerprint included."""
    if cfg.mode != "logprob":
        return cfg.mode, None
    try:
        engine.choice_logprobs(_requests(cands.head(1), prompts, "logprob"), DIGITS, assistant_prefix=SCORE_PREFIX,
                               desc="score probe")
    except NotImplementedError as e:
        return "generate", str(e) or type(e).__name__
    return "logprob", None


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
    mode, fallback = usable_mode(engine, cfg, prompts, cands)
    if fallback is not None:
        log.warning("the %s backend gives no log-probabilities (%s): this run scores in generate mode instead, "
                    "so score.sampling and score.samples (%d) now apply and every row records mode = generate",
                    getattr(engine, "name", type(engine).__name__), fallback, cfg.samples)
    used = dataclasses.replace(cfg, mode=mode)
    scored = process_in_chunks(
        cands, scores_path, lambda df, i: score_chunk(df, i, engine, used, prompts),
        chunk_size=cfg.chunk_size, settings=score_settings(used, prompts, engine_cfg, model_dir),
        desc=f"score ({mode})",
    )
    # fallback: why the mode used is not the one requested; null when it is
    metrics = {"mode": mode, "requested_mode": cfg.mode, "fallback": fallback} | score_metrics(
        scored, used, time.perf_counter() - start)
    metrics["model"] = str(model_dir)
    write_json(metrics, metrics_path)
    return metrics

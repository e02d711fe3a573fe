"""Params of the two self-curation stages: `score` (the previous model rates every candidate) and
`select` (keep the pairs rated at or above a threshold). Separate sections, so that a new
threshold never re-runs `score@it1`: M0's scores come from the DVC cache (the selection, the models
trained on it, the later iterations' scores and the evaluation re-run; tests/test_ablations.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from humpback.config import param, seed_param
from humpback.sampling import SamplingParams


@dataclass
class ScoreConfig:
    # generate: the paper's way: a brief reasoning, then "Score: <n>" on the last line, parsed from
    #           the text (slow: up to max_new_tokens per pair).
    # logprob:  one forward pass per pair with the reply forced to start with "Score: "; the score
    #           is the expected value sum_k k * p(k) over the renormalised probabilities of "1".."5".
    #           A backend without log-probabilities (an endpoint that returns none) falls back
    #           to generate for the run, with a warning; the metrics name both modes.
    mode: Literal["generate", "logprob"] = "logprob"
    # Judge sampling in generate mode (the paper's nucleus settings; reasoning plus the score line).
    sampling: SamplingParams = field(default_factory=SamplingParams)  # 256 new tokens: a brief reasoning, the score
    # generate mode: rate each pair this many times (distinct seeds) and keep the mean of the parsed
    # ratings; more samples smooth a noisy judge's 1-5 steps. logprob mode: unused.
    samples: int = param(1, ge=1)
    chunk_size: int = param(64, ge=1)  # pairs per resumable part
    seed: int = seed_param(0)  # chunk i, sample j samples with seed + i * samples + j


@dataclass
class SelectConfig:
    # Keep pairs with score >= threshold. The paper's final model keeps only 5 (generate mode).
    # In logprob mode the score is an expected value, so fractional thresholds (4.5) make sense.
    # The default keeps every scored pair and lets top_share make the cut (a 135M judge).
    threshold: float = param(1.0, ge=0, le=5)
    max_examples: int = param(0, ge=0)  # keep at most this many, best first (ties by segment_id); 0 = no cap
    # Keep at most this share of the scored pairs, best first; 0 = no cap. A small judge squeezes
    # its expected scores into a narrow band (SmolLM2-135M: about 3.3-3.7 for good and bad pairs
    # alike), so a relative cut keeps the pipeline meaningful where a fixed threshold keeps all or none.
    top_share: float = param(0.5, ge=0, le=1)
    allow_empty: bool = False  # a threshold that keeps nothing is an error unless this is true
    # false: keep every candidate of the scores table, scored or not, and skip the three rules
    # above (the paper's "no curation" comparison)
    curate: bool = True
    # N > 0: then a seeded random subsample of exactly N of the kept pairs (data scaling; random,
    # not best-first, so the N pairs keep the quality mix of the whole kept set). Fewer than N kept
    # is an error. Meant per iteration: iterations.it2.select.sample. 0 = keep them all.
    sample: int = param(0, ge=0)
    seed: int = seed_param(0)  # the subsample's seed

    def problems(self) -> list[tuple[str, str]]:
        if self.curate and self.sample and self.max_examples and self.sample > self.max_examples:
            return [("sample", f"{self.sample} is more than max_examples ({self.max_examples}): "
                               "the sample is drawn from at most max_examples kept pairs")]
        return []

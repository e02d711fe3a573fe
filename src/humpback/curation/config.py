"""Params of the two self-curation stages: `score` (the previous model rates every candidate) and
`select` (keep the pairs rated at or above a threshold). Separate sections, so that a new
threshold re-runs only `select@itN` and M0's scores come from the DVC cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from humpback.config import param
from humpback.sampling import SamplingParams


@dataclass
class ScoreConfig:
    # generate: the paper's way: a brief reasoning, then "Score: <n>" on the last line, parsed from
    #           the text (slow: up to max_new_tokens per pair).
    # logprob:  one forward pass per pair with the reply forced to start with "Score: "; the score
    #           is the expected value sum_k k * p(k) over the renormalised probabilities of "1".."5".
    mode: Literal["generate", "logprob"] = "logprob"
    # Judge sampling in generate mode (the paper's nucleus settings; reasoning plus the score line).
    sampling: SamplingParams = field(default_factory=SamplingParams)  # 256 new tokens: a brief reasoning, the score
    chunk_size: int = param(64, ge=1)  # pairs per resumable part
    seed: int = param(0, ge=0)  # chunk i samples with seed + i


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

"""Sampling settings: one model of them for params and engines alike."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from humpback.config import param


@dataclass
class SamplingParams:
    """How a stage samples (params `augment.sampling`, `score.sampling`, `eval.sampling`): the one model
    of sampling settings. The stage adds the seed of each chunk with `at(seed)`."""

    temperature: float = param(0.7, ge=0)  # the paper's nucleus sampling, T = 0.7, p = 0.9
    top_p: float = param(0.9, gt=0, le=1)
    max_new_tokens: int = param(256, ge=1)

    def at(self, seed: int) -> Sampling:
        return Sampling(**dataclasses.asdict(self), seed=seed)


@dataclass
class Sampling(SamplingParams):
    """One generation call's sampling: the settings plus its seed (temperature 0 = greedy)."""

    seed: int = 0

"""One small interface for "given chat requests, return completions or next-token log-probs".

Backends: transformers (CPU, or a GPU without vLLM), vLLM (GPU), any OpenAI-compatible endpoint.
Requests are chat messages, so each backend applies its own model's chat template.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from humpback.errors import HumpbackError
from humpback.prompts import Messages
from humpback.sampling import Sampling, SamplingParams

__all__ = ["Engine", "EngineError", "Messages", "Sampling", "SamplingParams"]


class EngineError(HumpbackError):
    """A backend gave up part-way (an endpoint kept failing, a worker died).

    `partial` holds every answer that did arrive, in request order, with None where one is missing,
    so a caller can keep them (write them, or retry only the missing requests).
    """

    def __init__(self, message: str, partial: Sequence[Any] | None = None):
        super().__init__(message)
        self.partial: list[Any] = list(partial or [])

    @property
    def done(self) -> int:
        return sum(x is not None for x in self.partial)


class Engine(abc.ABC):
    """A loaded model (or endpoint). Close it to free memory; usable as a context manager."""

    name: str = "engine"

    @abc.abstractmethod
    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        """One completion per request (the assistant's reply text), in request order.

        A backend that fails part-way raises EngineError whose `partial` keeps what finished."""

    @abc.abstractmethod
    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        """Log-probability of each single-token `choice` as the next token after the reply begins
        with `assistant_prefix` (e.g. "Score: "). A choice the backend cannot see gets -inf."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

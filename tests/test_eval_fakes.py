"""Fake engines shared by the evaluation tests (this module holds no tests)."""

from __future__ import annotations

import math
import re

from humpback.engines.base import Engine

_SLOTS = re.compile(r"Instruction:\n(.*?)\n\nAnswer 1:\n(.*?)\n\nAnswer 2:\n(.*?)\n\nReply with", re.S)


def slots(messages) -> tuple[str, str, str]:
    """(instruction, answer 1, answer 2) out of a request built from the default judge template."""
    m = _SLOTS.search(messages[-1]["content"])
    assert m, "request does not follow the judge template"
    return m.group(1), m.group(2), m.group(3)


class RecordingEngine(Engine):
    """Base for fakes: records every request it sees."""

    def __init__(self):
        self.generate_calls: list = []
        self.logprob_calls: list = []
        self.closed = False

    def generate(self, requests, sampling, *, desc="generate"):
        self.generate_calls.append((list(requests), sampling))
        return [self.reply(r, sampling) for r in requests]

    def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
        self.logprob_calls.append((list(requests), list(choices), assistant_prefix))
        return [self.logprobs(r, choices) for r in requests]

    def reply(self, messages, sampling) -> str:
        raise NotImplementedError

    def logprobs(self, messages, choices) -> dict[str, float]:
        raise NotImplementedError

    def close(self):
        self.closed = True


class AnswerEngine(RecordingEngine):
    """A 'model' that answers deterministically from the instruction and the sampling seed."""

    def reply(self, messages, sampling):
        return f" answer to: {messages[-1]['content']} (seed {sampling.seed}) "


class FirstSlotJudge(RecordingEngine):
    """Pure position bias: always prefers whatever is shown first."""

    def logprobs(self, messages, choices):
        return {choices[0]: -0.05, choices[1]: -3.0}


class LongerJudge(RecordingEngine):
    """Prefers the longer answer, softly: P(slot 1) = sigmoid(k * (len1 - len2) / scale)."""

    def __init__(self, k: float = 1.0, scale: float = 50.0):
        super().__init__()
        self.k, self.scale = k, scale

    def logprobs(self, messages, choices):
        _, a, b = slots(messages)
        z = self.k * (len(a) - len(b)) / self.scale
        p = 1 / (1 + math.exp(-z))
        return {choices[0]: math.log(max(p, 1e-12)), choices[1]: math.log(max(1 - p, 1e-12))}


class TextJudge(RecordingEngine):
    """No log-probabilities; replies with text that names the answer containing `marker`, or `fallback`."""

    def __init__(self, marker: str = "GOOD", fallback: str = "I cannot decide."):
        super().__init__()
        self.marker, self.fallback = marker, fallback

    def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
        raise NotImplementedError("this backend gives no log-probabilities")

    def reply(self, messages, sampling):
        _, a, b = slots(messages)
        if self.marker in a and self.marker not in b:
            return "Better answer: 1"
        if self.marker in b and self.marker not in a:
            return "Answer 2 is better, it is more complete."
        return self.fallback

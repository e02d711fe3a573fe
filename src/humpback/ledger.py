"""The compute ledger of one stage run: tokens in and out, examples, seconds, device and backend.

The stage wrapper (`humpback.stage.stage`) resets it when a stage starts and, when the stage ends
well under DVC (which names the stage in DVC_STAGE), writes it to `metrics/cost/<stage>.json`, an out
of that stage: a stage restored from DVC's cache keeps the entry of the run that made it. The
`cost` stage merges the entries into metrics/cost.json (humpback.cost).

What counts, at one place per kind of work:
* engines: every request is an example; `tokens_in` the prompt tokens as rendered for the model
  (after fitting to the context), `tokens_out` the tokens generated (up to and including the end of
  turn; a choice scored by its log-probability generates none). A backend whose replicas run in
  other processes (vLLM data parallel, Ray) ships each call's counts back with its answer
  (`counted`), so they are counted once, in the stage's process.
* training: the tokens of the training examples times the epochs run (padding excluded).
* any other stage: what its script adds (the rows it read, the tokens it scored).

A resumed stage counts the work of this run only: the chunks an earlier run finished cost nothing now.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

COST_DIR = Path("metrics/cost")  # relative to the stage's working directory (the project root)
STAGE_ENV = "DVC_STAGE"  # set by `dvc repro` / `dvc exp run` for every command it runs

T = TypeVar("T")


@dataclasses.dataclass
class Counts:
    tokens_in: int = 0
    tokens_out: int = 0
    examples: int = 0

    def minus(self, other: Counts) -> Counts:
        return Counts(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))


_counts = Counts()
_backend: str | None = None
_device: dict | None = None  # what an engine said it ran on, when not this process's own device


def reset() -> None:
    global _counts, _backend, _device
    _counts, _backend, _device = Counts(), None, None


def add_tokens(tokens_in: int, tokens_out: int) -> None:
    _counts.tokens_in += int(tokens_in)
    _counts.tokens_out += int(tokens_out)


def add_examples(n: int) -> None:
    _counts.examples += int(n)


def add(counts: Counts) -> None:
    add_tokens(counts.tokens_in, counts.tokens_out)
    add_examples(counts.examples)


def note_engine(backend: str, device: dict | None = None) -> None:
    """The backend a stage ran (transformers, vllm, ray, openai), and the device it ran on when that
    is not this process's own (Ray replicas on other nodes, a remote endpoint)."""
    global _backend, _device
    _backend = backend
    if device is not None:
        _device = device


def noted_device() -> dict | None:
    return _device


def snapshot() -> Counts:
    return dataclasses.replace(_counts)


def counted(fn: Callable[..., T], *args, **kwargs) -> tuple[T, Counts]:
    """`fn(*args, **kwargs)` and what it added to this process's ledger: a replica's answer travels
    with its counts, which the driver `add`s (the replica's own ledger is never read)."""
    before = snapshot()
    value = fn(*args, **kwargs)
    return value, _counts.minus(before)


def stage_name(environ=os.environ) -> str | None:
    """The DVC stage this process runs (`score@it1`), or None outside DVC. A stage of a dvc.yaml in a
    subdirectory is addressed `sub/dvc.yaml:name`: its name is what follows the colon."""
    name = environ.get(STAGE_ENV)
    if not name:
        return None
    name = name.rsplit(":", 1)[-1]
    return name if re.fullmatch(r"[\w.@-]+", name) else None


def entry(stage: str, seconds: float) -> dict[str, Any]:
    from humpback.hardware import device_summary

    return {"stage": stage, "seconds": round(seconds, 3), **dataclasses.asdict(_counts),
            "backend": _backend, "device": _device or device_summary()}


def write_entry(stage: str, seconds: float, root: str | Path = ".") -> Path:
    from humpback.io import write_json

    path = Path(root) / COST_DIR / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(entry(stage, seconds), path)
    return path

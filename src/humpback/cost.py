"""The compute ledger of the whole pipeline: every stage's metrics/cost/<stage>.json (written by the
stage wrapper, humpback.ledger) checked and merged into metrics/cost.json.

metrics/cost.json: {"totals": {...}, "by_device": {"cpu": {...}, "cuda": {...}}, "stages": {<stage>: entry}},
where totals and each device's row sum the stages' seconds, tokens_in, tokens_out and examples and
count the stages. An entry: {"stage", "seconds", "tokens_in", "tokens_out", "examples", "backend",
"device": {"type", "name", "count"}}.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from humpback.errors import InputError
from humpback.readers import read_json

SUMMED = ("seconds", "tokens_in", "tokens_out", "examples")
COUNTS = ("tokens_in", "tokens_out", "examples")


def _number(value: Any, *, integer: bool) -> bool:
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def entry_problem(data: Any, stage: str) -> str | None:
    """What is wrong with one stage's entry (read from <stage>.json), or None."""
    if not isinstance(data, dict):
        return f"an entry must be a JSON object, got {type(data).__name__}"
    missing = [k for k in ("stage", *SUMMED, "backend", "device") if k not in data]
    if missing:
        return f"missing {', '.join(repr(k) for k in missing)}"
    if data["stage"] != stage:
        return f"'stage' is {data['stage']!r}, but the file is named for {stage!r}"
    if not _number(data["seconds"], integer=False):
        return f"'seconds' must be a number >= 0, got {data['seconds']!r:.40}"
    for key in COUNTS:
        if not _number(data[key], integer=True):
            return f"'{key}' must be an integer >= 0, got {data[key]!r:.40}"
    if data["backend"] is not None and not isinstance(data["backend"], str):
        return f"'backend' must be a string or null, got {data['backend']!r:.40}"
    device = data["device"]
    if not isinstance(device, dict) or not isinstance(device.get("type"), str):
        return f"'device' must be an object with a 'type' (cpu, cuda), got {device!r:.60}"
    if device.get("name") is not None and not isinstance(device["name"], str):
        return f"'device.name' must be a string or null, got {device['name']!r:.40}"
    if not _number(device.get("count"), integer=True):
        return f"'device.count' must be an integer >= 0, got {device.get('count')!r:.40}"
    return None


def read_entry(path: Path) -> dict:
    data = read_json(path)
    if (problem := entry_problem(data, path.stem)) is not None:
        raise InputError(path, problem)
    return data


def _sums(entries: list[dict]) -> dict:
    out: dict[str, Any] = {"stages": len(entries)}
    for key in SUMMED:
        out[key] = sum(e[key] for e in entries)
    out["seconds"] = round(out["seconds"], 3)
    return out


def merge(entries: list[dict]) -> dict:
    """One ledger from the stages' entries: per stage (sorted by name), per device type, in total."""
    entries = sorted(entries, key=lambda e: e["stage"])
    devices = sorted({e["device"]["type"] for e in entries})
    return {
        "totals": _sums(entries),
        "by_device": {d: _sums([e for e in entries if e["device"]["type"] == d]) for d in devices},
        "stages": {e["stage"]: {k: v for k, v in e.items() if k != "stage"} for e in entries},
    }


def merge_dir(directory: str | Path) -> dict:
    """metrics/cost.json's content from the entries in `directory` (<stage>.json each)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "no stage cost entries (no stage has run under dvc repro yet)")
    return merge([read_entry(p) for p in sorted(directory.glob("*.json"))])

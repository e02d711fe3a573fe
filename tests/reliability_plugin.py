"""Ledger of the reliability suite: every bad input tried, fault injected and output checked intact.

The reliability tests record each case here (`bad_input`, `fault`, `hostile`, `intact`). When the environment
variable HUMPBACK_RELIABILITY_OUT names a file, the session-finish hook writes the counts and the
cases there; scripts/reliability_report.py runs the suite that way to refresh metrics/reliability.json.
A run with failures writes nothing: the file only ever reports a suite that passed.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as their plugin.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

ENV = "HUMPBACK_RELIABILITY_OUT"

_bad: dict[tuple[str, str], str] = {}  # (reader, case) -> what it produced
_faults: dict[tuple[str, str], str] = {}  # (kind, case) -> what it produced
_intact: Counter[str] = Counter()  # output checks that passed, per test
_hostile: dict[tuple[str, str], str] = {}  # (class, case) -> what it produced


def _tidy(outcome: str) -> str:
    """One line without temporary paths, ports or object ids, so the report is stable between runs."""
    text = " ".join(str(outcome).split())
    text = re.sub(r"/\S*?/(pytest-\d+|tmp\w*)/\S*?/", "", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return text[:240]


def bad_input(reader: str, case: str, outcome: str) -> None:
    _bad[(reader, case)] = _tidy(outcome)


def fault(kind: str, case: str, outcome: str) -> None:
    _faults[(kind, case)] = _tidy(outcome)


def hostile(kind: str, case: str, outcome: str) -> None:
    """A careless or hostile input of class `kind` (names, ranges, bombs, pages, errors, secrets, invisible,
    outputs kept, permissions) and what it produced: a named one-line error or a counted rejection."""
    _hostile[(kind, case)] = _tidy(outcome)


def intact(check: str, n: int = 1) -> None:
    """`n` outputs were found whole (the previous version, the finished result, or absent) after a fault."""
    _intact[check] += n


def report() -> dict:
    by_reader = Counter(r for r, _ in _bad)
    by_kind = Counter(k for k, _ in _faults)
    return {
        "bad_inputs": sum(by_reader.values()),
        "bad_inputs_by_reader": dict(sorted(by_reader.items())),
        "faults_injected": sum(by_kind.values()),
        "faults_by_kind": dict(sorted(by_kind.items())),
        "hostile_inputs": len(_hostile),
        "hostile_by_class": dict(sorted(Counter(k for k, _ in _hostile).items())),
        "intact_output_checks": sum(_intact.values()),
        "lost_outputs": 0,  # a lost or half-written output fails its test, and a failed run writes no report
        "cases": {
            "bad_inputs": [{"reader": r, "case": c, "outcome": o} for (r, c), o in sorted(_bad.items())],
            "faults": [{"kind": k, "case": c, "outcome": o} for (k, c), o in sorted(_faults.items())],
            "hostile": [{"class": k, "case": c, "outcome": o} for (k, c), o in sorted(_hostile.items())],
        },
    }


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get(ENV)
    if not out or exitstatus != 0 or not (_bad or _faults or _hostile):
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(report(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)

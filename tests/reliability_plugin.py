"""Ledger of the reliability suite: every bad input tried, fault injected and output checked intact.

The reliability tests record each case here (`bad_input`, `fault`, `hostile`) and compare every output
they expect to survive a fault with what they found (`outputs`), which counts the intact and the lost
ones before the test asserts that none was lost. When the environment variable
HUMPBACK_RELIABILITY_OUT names a file, the session-finish hook writes the counts and the cases there;
scripts/reliability_report.py runs the suite that way to refresh metrics/reliability.json. A run with
failing tests writes its report too, with the failures counted; an interrupted run writes nothing.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as their plugin.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

ENV = "HUMPBACK_RELIABILITY_OUT"

_bad: dict[tuple[str, str], str] = {}  # (reader, case) -> what it produced
_faults: dict[tuple[str, str], str] = {}  # (kind, case) -> what it produced
_intact: Counter[str] = Counter()  # outputs found whole after a fault, per check
_lost: Counter[str] = Counter()  # outputs found changed, half-written or missing, per check
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


def outputs(check: str, expected: Mapping[str, object], found: Mapping[str, object], *,
            absent_ok: bool = False) -> list[str]:
    """Compare each expected output (its digest, rows or bytes) with what was found after a fault: equal
    is intact, anything else is lost, and with `absent_ok` a missing one (None or no key) is intact too
    (a stage that removes its output before running). Counts both and returns the lost names."""
    lost = [name for name, want in expected.items()
            if found.get(name) != want and not (absent_ok and found.get(name) is None)]
    _intact[check] += len(expected) - len(lost)
    _lost[check] += len(lost)
    return lost


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
        "lost_outputs": sum(_lost.values()),
        "lost_by_check": {k: v for k, v in sorted(_lost.items()) if v},
        "cases": {
            "bad_inputs": [{"reader": r, "case": c, "outcome": o} for (r, c), o in sorted(_bad.items())],
            "faults": [{"kind": k, "case": c, "outcome": o} for (k, c), o in sorted(_faults.items())],
            "hostile": [{"class": k, "case": c, "outcome": o} for (k, c), o in sorted(_hostile.items())],
        },
    }


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get(ENV)
    # 0: every test passed, 1: some failed (counted below); anything else is an interrupted or broken run
    if not out or exitstatus not in (0, 1) or not (_bad or _faults or _hostile):
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps({"tests_failed": session.testsfailed, **report()}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)

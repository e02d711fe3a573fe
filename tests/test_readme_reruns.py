"""The README's table of the paper's experiments says which stages each command re-runs: checked
against DVC's own view of what the params change makes stale (tests/test_ablations.py)."""

from __future__ import annotations

import re
import shlex

import pytest
from readme_commands import REPO
from test_ablations import stale_after, workspace  # noqa: F401 (the fixture)

ROW = re.compile(r"^\| (?P<what>[^|]+) \| `(?P<cmd>dvc exp run [^`]+)` \| (?P<reruns>[^|]+) \|$", re.M)
ALWAYS_AFTER_EVAL = {"paired", "length_controlled", "report", "export"}


def expand(column: str) -> set[str]:
    """`select@{it1,it2}, eval@it2, judge_check` -> stage names; eval@M is generate@M, judge@M and
    heldout@M, and a row with any of them also re-runs the comparisons, the LC fit and the report."""
    stages: set[str] = set()
    for item in re.findall(r"`([^`]+)`", column.split(";")[0]):  # after ";": what does not re-run
        name, _, keys = item.partition("@")
        keys = keys.strip("{}").split(",") if keys else [""]
        for key in keys:
            for stage in ("generate", "judge", "heldout") if name == "eval" else (name,):
                stages.add(f"{stage}@{key}" if key else stage)
    if any(s.startswith(("generate@", "judge@", "heldout@")) for s in stages):
        stages |= ALWAYS_AFTER_EVAL
    return stages


ROWS = [(m["what"].strip(), m["cmd"], m["reruns"]) for m in ROW.finditer((REPO / "README.md").read_text())]


def test_the_table_is_there():
    assert len(ROWS) >= 7


@pytest.mark.parametrize(("what", "cmd", "reruns"), ROWS, ids=[r[0][:30] for r in ROWS])
def test_each_rows_reruns_are_what_dvc_would_rerun(workspace, what, cmd, reruns):  # noqa: F811
    words = shlex.split(cmd)
    overrides = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-S"]
    assert stale_after(workspace, *overrides) == expand(reruns), f"README row {what!r}: {reruns}"


def test_expand_reads_the_notation():
    assert expand("`select@{it1,it2}`, `score@it2`") == {"select@it1", "select@it2", "score@it2"}
    assert expand("`eval@it2`") == {"generate@it2", "judge@it2", "heldout@it2", *ALWAYS_AFTER_EVAL}

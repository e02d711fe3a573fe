"""A bad param never costs existing outputs: DVC clears a stage's outputs before it runs the stage's
command, so params are validated by a stage of their own (`params`) that every other stage depends
on. A typo anywhere in params.yaml stops `dvc repro` there, with one line, before any output of a
good earlier run is touched.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import dvc_stage
import networkx as nx
import pytest
import reliability_plugin as ledger

pytest_plugins = ["reliability_plugin"]

ROOT = Path(__file__).resolve().parents[1]
VALID = "data/prepared/params_valid.json"


def _dvc(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=ws, capture_output=True, text=True, timeout=300)


def _digests(ws: Path) -> dict[str, str]:
    """Every file the stages wrote (the params stage's own constant marker aside)."""
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for top in ("data/prepared", "metrics", "models") for p in (ws / top).rglob("*")
            if p.is_file() and str(p.relative_to(ws)) != VALID}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A scratch copy of the project after a good `dvc repro seed`, and the digests of its outputs."""
    ws = dvc_stage.bench_pipeline().copy_project(tmp_path_factory.mktemp("kept"))
    proc = _dvc(ws, "repro", "seed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (ws / "data/prepared/seed.parquet").is_file()
    return ws, _digests(ws)


def test_every_stage_depends_on_the_params_check():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        graph = nx.relabel_nodes(repo.index.graph, lambda st: st.name)  # edge: stage -> a stage it needs
    assert "params" in graph
    assert {name for name in graph if name != "params" and "params" not in nx.descendants(graph, name)} == set()


# (case, a line to add under a top-level key or to replace, the target DVC is asked to reproduce)
CASES = [
    ("unknown key in the stage's own section", ("seed:", "seed:\n  colour: blue"), "seed", "unknown key"),
    ("value of the wrong type", ("seed:", "seed:\n  max_chars: many"), "seed", "seed.max_chars"),
    ("out-of-range value in another section", ("select:", "select:\n  top_share: 7"), "seed", "select.top_share"),
    ("unknown top-level section", ("seed:", "sede:\n  max_chars: 10\nseed:"), "seed", "sede"),
    ("malformed YAML", ("seed:", "seed: [unclosed"), "seed", "params.yaml"),
    ("bad iteration chain, whole pipeline", ("iterations:", "iterations:\n  it9: {prev: it9}"), None, "it9"),
]


@pytest.mark.parametrize("case, edit, target, needle", CASES, ids=[c[0] for c in CASES])
def test_a_bad_param_stops_dvc_before_it_touches_outputs(seeded, case, edit, target, needle):
    ws, before = seeded
    params = ws / "params.yaml"
    original = params.read_text()
    old, new = edit
    assert f"\n{old}" in original
    params.write_text(original.replace(f"\n{old}", f"\n{new}", 1))
    try:
        proc = _dvc(ws, "repro", *([target] if target else []))
    finally:
        params.write_text(original)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0
    assert "Running stage 'params'" in proc.stdout
    assert [s for s in ("base_model", "seed", "corpus") if f"Running stage '{s}'" in proc.stdout] == []
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert _digests(ws) == before  # every earlier output still there, byte for byte
    ledger.intact("outputs kept after a bad param", len(before))
    ledger.hostile("outputs kept", case, errors[0])


def test_after_the_fix_nothing_reruns_but_the_check(seeded):
    """The marker is the same for every valid file: fixing the typo re-runs the check, not the seed."""
    ws, before = seeded
    proc = _dvc(ws, "repro", "seed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Running stage 'seed'" not in proc.stdout
    assert _digests(ws) == before

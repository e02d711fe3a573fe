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
CHECK_OUTS = {VALID, "metrics/cost/params.json"}  # the params stage's own: its marker and its compute entry


def _dvc(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=ws, capture_output=True, text=True, timeout=300)


def _digests(ws: Path) -> dict[str, str]:
    """Every file the stages wrote (the params stage's own marker and compute entry aside)."""
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for top in ("data/prepared", "metrics", "models") for p in (ws / top).rglob("*")
            if p.is_file() and str(p.relative_to(ws)) not in CHECK_OUTS}


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


# (case, an existing params line, what replaces it, the target DVC is asked to reproduce, a word the
# one-line error must hold). DVC reads params.yaml itself (dvc.yaml interpolates from it), so a file it
# cannot parse, or a DAG it cannot build, is refused by DVC before any stage runs; every other fault by
# the params stage.
CASES = [
    ("unknown key in the stage's own section", "  lang: en ", "  colour: blue\n  lang: en ", "seed", "colour"),
    ("value of the wrong type", "  max_chars: 0 ", "  max_chars: many ", "seed", "seed.max_chars"),
    ("out-of-range value in another section", "  top_share: 0.5 ", "  top_share: 7 ", "seed", "select.top_share"),
    ("unknown top-level section", "\nseed:", "\nsede: {max_chars: 10}\nseed:", "seed", "sede"),
    ("iteration chain that never reaches m0", "  it2: {prev: it1}", "  it2: {prev: it3}\n  it3: {prev: it2}", None,
     "it3"),
    ("malformed YAML", "  lang: en ", "  lang: [en ", "seed", "params.yaml"),
    ("a duplicate key", "  lang: en ", "  lang: de\n  lang: en ", "seed", "lang"),
    ("an iteration that scores with itself (a DAG cycle)", "  it2: {prev: it1}", "  it2: {prev: it2}", None, "it2"),
]


@pytest.mark.parametrize("case, old, new, target, needle", CASES, ids=[c[0] for c in CASES])
def test_a_bad_param_stops_dvc_before_it_touches_outputs(seeded, case, old, new, target, needle):
    ws, before = seeded
    params = ws / "params.yaml"
    original = params.read_text()
    assert original.count(old) == 1, old
    params.write_text(original.replace(old, new))
    try:
        proc = _dvc(ws, "repro", *([target] if target else []))
    finally:
        params.write_text(original)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    ran = [s for s in ("base_model", "seed", "corpus") if f"Running stage '{s}'" in proc.stdout]
    assert ran == [], f"{ran} ran under a bad params file"
    if "Running stage 'params'" in proc.stdout:  # our check refused it
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and needle in lines[0], proc.stderr
    else:  # DVC refused it while reading the project
        lines = [line for line in proc.stderr.splitlines() if line.startswith("ERROR: ")]
        assert lines and needle in proc.stderr, proc.stderr
    # every earlier output still there, byte for byte
    assert not ledger.outputs("outputs kept after a bad param", before, _digests(ws))
    ledger.hostile("outputs kept", case, lines[0])


def test_after_the_fix_nothing_reruns_but_the_check(seeded):
    """The marker is the same for every valid file: fixing the typo re-runs the check, not the seed."""
    ws, before = seeded
    proc = _dvc(ws, "repro", "seed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Running stage 'seed'" not in proc.stdout
    assert _digests(ws) == before

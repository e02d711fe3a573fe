"""Sharing artifacts through a DVC remote: push from one workspace, pull or reuse them in a clone.

A two-stage project (a "model" directory, then a metrics file computed from it) stands in for
the pipeline; every stage run is appended to runs.log, so a stage that was reused and not re-run
leaves no line there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = """import json, pathlib, sys
p = json.load(open("params.json"))
out = pathlib.Path("models/m0"); out.mkdir(parents=True, exist_ok=True)
(out / "adapter.bin").write_bytes(bytes(range(256)) * p["size"])
(out / "adapter_config.json").write_text(json.dumps({"r": p["size"]}))
open("runs.log", "a").write("train\\n")
"""
SCORE = """import json, pathlib
data = pathlib.Path("models/m0/adapter.bin").read_bytes()
pathlib.Path("metrics").mkdir(exist_ok=True)
json.dump({"bytes": len(data)}, open("metrics/score.json", "w"))
open("runs.log", "a").write("score\\n")
"""
DVC_YAML = f"""stages:
  train:
    cmd: {sys.executable} train.py
    deps: [train.py, params.json]
    outs: [models/m0]
  score:
    cmd: {sys.executable} score.py
    deps: [score.py, models/m0]
    outs: [metrics/score.json]
"""


def sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{out[-3000:]}"
    return out


def ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def runs(ws: Path) -> list[str]:
    log = ws / "runs.log"
    return log.read_text().split() if log.exists() else []


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A reproduced, committed project whose data and run-cache are pushed to a local remote."""
    root = tmp_path_factory.mktemp("remote")
    ws, remote = root / "origin", root / "storage"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN)
    (ws / "score.py").write_text(SCORE)
    (ws / "params.json").write_text(json.dumps({"size": 64}))
    (ws / "dvc.yaml").write_text(DVC_YAML)
    (ws / ".gitignore").write_text("runs.log\n")
    sh(ws, "git", "init", "-q")
    sh(ws, "dvc", "init", "-q")
    sh(ws, "dvc", "remote", "add", "-d", "storage", str(remote))
    assert ran(sh(ws, "dvc", "repro")) == {"train", "score"}
    sh(ws, "git", "add", "-A")
    sh(ws, "git", "-c", "user.name=humpback tests", "-c", "user.email=tests@localhost", "commit", "-q", "-m", "project")
    sh(ws, "dvc", "push")
    assert not (remote / "runs").exists()  # a plain push sends the data, not the run-cache ...
    sh(ws, "dvc", "push", "--run-cache")
    assert any((remote / "runs").iterdir())  # ... which needs --run-cache
    return ws


def clone(origin: Path, name: str) -> Path:
    dst = origin.parent / name
    sh(origin.parent, "git", "clone", "-q", str(origin), str(dst))
    assert not (dst / "models" / "m0").exists()  # git carries no data
    return dst


def same_outputs(a: Path, b: Path) -> None:
    for rel in ("models/m0/adapter.bin", "models/m0/adapter_config.json", "metrics/score.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_pull_restores_outputs(origin):
    ws = clone(origin, "pulled")
    sh(ws, "dvc", "pull", "--run-cache")
    same_outputs(origin, ws)
    out = sh(ws, "dvc", "status")
    assert "up to date" in out.lower()  # nothing to reproduce
    assert runs(ws) == []


def test_hardlinked_checkout_shares_the_cache(origin):
    """Large checkpoints: with cache.type hardlink the workspace file is the cache file, not a copy."""
    ws = clone(origin, "linked")
    sh(ws, "dvc", "config", "--local", "cache.type", "hardlink,symlink,copy")
    sh(ws, "dvc", "pull")
    same_outputs(origin, ws)
    assert (ws / "models/m0/adapter.bin").stat().st_nlink >= 2


def test_repro_pull_does_not_rerun(origin):
    ws = clone(origin, "repro-pull")
    out = sh(ws, "dvc", "repro", "--pull")
    assert ran(out) == set() and runs(ws) == []
    same_outputs(origin, ws)


def test_run_cache_skips_stages_without_a_lock_file(origin):
    """A teammate without dvc.lock (another branch, a fresh dvc.yaml) still gets cached results."""
    ws = clone(origin, "run-cache")
    (ws / "dvc.lock").unlink()
    out = sh(ws, "dvc", "repro", "--pull")  # no lock entry to pull by: the remote run-cache answers
    assert ran(out) == set() and runs(ws) == [], out
    assert "Stage 'train' is cached" in out and "Stage 'score' is cached" in out
    same_outputs(origin, ws)
    # a params change is new work: the stages run again
    (ws / "params.json").write_text(json.dumps({"size": 65}))
    assert ran(sh(ws, "dvc", "repro")) == {"train", "score"}
    assert runs(ws) == ["train", "score"]


def test_missing_remote_data_is_reported(origin, tmp_path):
    """An empty remote cannot satisfy a pull: dvc says so instead of leaving a silent gap."""
    ws = clone(origin, "empty-remote")
    empty = tmp_path / "empty"
    empty.mkdir()
    sh(ws, "dvc", "remote", "modify", "--local", "storage", "url", str(empty))
    proc = subprocess.run(["dvc", "pull"], cwd=ws, capture_output=True, text=True,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"}, timeout=120)
    assert proc.returncode != 0
    assert not (ws / "models" / "m0" / "adapter.bin").exists()
    shutil.rmtree(ws)

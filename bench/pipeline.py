"""`dvc repro` overheads on the tiny preset: the full DAG, a no-op re-run, and a threshold change.

    python bench/pipeline.py [--keep DIR]

A scratch copy of the tracked project (the way tests/test_pipeline.py builds one) gets the tiny
preset (`humpback preset configs/tiny.yaml`), so the whole DAG costs minutes, not hours. Then:
the full `dvc repro`; `dvc repro` again (nothing changed: DVC only hashes and compares); and
`dvc repro` after a new `select.threshold`, which must re-run selection and what follows but
never `score@it1` (M0's scores come from the cache).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return seconds, out


def copy_project(ws: Path) -> Path:
    """Copy the git-tracked project into `ws` and make it a repository."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for rel in filter(None, files.stdout.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (ws / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, ws / rel)
    _run(["git", "init", "-q"], ws)
    return ws


def make_workspace(ws: Path) -> Path:
    """A copy of the project (`copy_project`) with the tiny preset applied."""
    copy_project(ws)
    _run([sys.executable, "-m", "humpback.cli", "preset", "configs/tiny.yaml"], ws)
    return ws


def repro(ws: Path, *targets: str) -> tuple[float, list[str]]:
    seconds, out = _run(["dvc", "repro", *targets], ws)
    return round(seconds, 1), sorted(set(re.findall(r"Running stage '([^']+)'", out)))


def new_threshold(ws: Path) -> float:
    """A threshold inside the it1 score range, so the kept set really changes."""
    scores = pl.read_parquet(ws / "data/scores/it1.parquet")["score"].drop_nulls()
    threshold = float(scores.quantile(0.75, interpolation="lower"))
    return threshold if threshold > scores.min() else float(scores.sort()[-1])


def run(keep: str | None = None) -> dict:
    tmp = tempfile.mkdtemp(prefix="humpback-bench-")
    try:
        ws = make_workspace(Path(tmp))
        results = {}
        seconds, ran = repro(ws)
        results["full"] = {"seconds": seconds, "stages_run": len(ran)}
        seconds, ran = repro(ws)
        results["noop"] = {"seconds": seconds, "stages_run": len(ran)}
        threshold = new_threshold(ws)
        params = ws / "params.yaml"
        text, n = re.subn(r"(?m)^(select:.*\n(?:[ #].*\n)*?  threshold:) [0-9.e+-]+", rf"\g<1> {threshold}",
                          params.read_text(), count=1)
        if n != 1:
            raise RuntimeError("select.threshold not found in params.yaml")
        params.write_text(text)
        seconds, ran = repro(ws)
        results["threshold"] = {"seconds": seconds, "stages_run": len(ran), "stages": ran,
                                "score_it1_reused": "score@it1" not in ran, "new_threshold": threshold}
    finally:
        if keep:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    for name, r in results.items():
        print(f"{name:<10} {r['seconds']:>7} s  {r['stages_run']:>3} stages run")
    print("threshold change re-ran:", ", ".join(results["threshold"]["stages"]))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="copy the scratch workspace here afterwards")
    run(ap.parse_args().keep)


if __name__ == "__main__":
    main()

"""Atomic outputs under SIGKILL: a stage killed mid-write leaves the previous output or none, never a
half file, and DVC still sees the stage as not done.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
import reliability_plugin as ledger

from humpback.corpus.synthetic import make_corpus

pytest_plugins = ["reliability_plugin"]

ROOT = Path(__file__).resolve().parents[1]
OUTS = ("data/prepared/segments.parquet", "data/prepared/rejected.parquet")
PARAMS = "corpus:\n  sources:\n    - {kind: table, path: dump.jsonl}\n  batch_size: 1000\n"


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def wait_for(cond, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended before the kill point (exit {proc.returncode}):\n{err[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the kill point never came")


def writing(ws: Path) -> bool:
    """The corpus stage has written at least one batch into its temporary output."""
    return any(p.stat().st_size > 100 for p in (ws / "data/prepared").glob(".segments.parquet.*.tmp"))


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def check_outputs(ws: Path, before: dict[str, str | None], case: str, may_be_gone: bool = False) -> None:
    now = {rel: digest(ws / rel) for rel in OUTS}
    lost = ledger.outputs(case, before, now, absent_ok=may_be_gone)
    assert not lost, f"{lost} changed after a kill"
    for rel in OUTS:
        if now[rel] is not None:
            pl.read_parquet(ws / rel)  # still the whole previous file
    # what a kill can leave is a hidden temporary beside the output, never the output itself
    stray = [p.name for p in (ws / "data/prepared").iterdir() if str(p.relative_to(ws)) not in OUTS]
    assert all(name.endswith(".tmp") or name == ".gitignore" for name in stray), stray


@pytest.fixture(scope="module")
def big_dump(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dump") / "big.jsonl"
    make_corpus(path, 3000, seed=0)  # ~18k segments: a few seconds of corpus work
    return path


@pytest.mark.parametrize("previous", [False, True], ids=["first run", "over a previous output"])
def test_corpus_stage_killed_mid_write(tmp_path, big_dump, previous):
    (tmp_path / "params.yaml").write_text(PARAMS)
    if previous:
        make_corpus(tmp_path / "dump.jsonl", 20, seed=1)
        done = dvc_stage.run_subprocess("corpus", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    before = {rel: digest(tmp_path / rel) for rel in OUTS}
    (tmp_path / "dump.jsonl").unlink(missing_ok=True)
    (tmp_path / "dump.jsonl").symlink_to(big_dump)
    proc = subprocess.Popen(dvc_stage.command("corpus"), cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: writing(tmp_path), proc)
    kill_group(proc)
    case = f"corpus stage SIGKILL mid-write ({'previous output' if previous else 'first run'})"
    check_outputs(tmp_path, before, case)
    ledger.fault("SIGKILL", case, "previous output kept byte for byte" if previous else "no output file")


CHUNK_SCRIPT = textwrap.dedent("""
    import sys, time
    import polars as pl
    from humpback.chunks import process_in_chunks

    def slow(chunk, i):
        time.sleep(float(sys.argv[2]))
        with open(sys.argv[3], "a") as log:
            log.write(f"{i}\\n")
        return chunk.with_columns((pl.col("x") * 2).alias("y"), pl.lit(i).alias("chunk"))

    df = pl.DataFrame({"x": list(range(40))})
    process_in_chunks(df, sys.argv[1], slow, chunk_size=4, settings={"v": 1})
""")


def test_chunked_stage_killed_then_resumed(tmp_path):
    """Killed between and during chunks: the finished parts are whole Parquet files, the output is
    absent, and a re-run computes only the missing chunks and gives the uninterrupted result."""
    script = tmp_path / "chunked.py"
    script.write_text(CHUNK_SCRIPT)
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "0.3", str(tmp_path / "first.log")],
                            start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(list(parts.glob("part-*.parquet"))) >= 3, proc)
    kill_group(proc)
    finished = sorted(parts.glob("part-*.parquet"))
    assert not out.exists() and 3 <= len(finished) < 10
    # every part the kill left is whole: a part is written atomically or not at all
    assert not ledger.outputs("chunked stage SIGKILL: finished parts", {p.name: 4 for p in finished},
                              {p.name: pl.read_parquet(p).height for p in finished})
    done_before = {int(p.stem.split("-")[1]) for p in finished}

    again = subprocess.run([sys.executable, str(script), str(out), "0", str(tmp_path / "again.log")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    result = pl.read_parquet(out)
    expected = pl.DataFrame({"x": list(range(40))}).with_columns(
        (pl.col("x") * 2).alias("y"), pl.Series("chunk", [i // 4 for i in range(40)], dtype=pl.Int32))
    assert not ledger.outputs("chunked stage SIGKILL: resumed output", {"out.parquet": expected.rows()},
                              {"out.parquet": result.rows()})
    assert result.equals(expected) and not parts.exists()
    # the re-run computed exactly the chunks that had no finished part
    recomputed = {int(line) for line in (tmp_path / "again.log").read_text().split()}
    assert recomputed == set(range(10)) - done_before
    ledger.fault("SIGKILL", "chunked stage (process_in_chunks) mid-run",
                 "the finished parts (3 or more of 10) kept whole; no output; the re-run computed only the "
                 "missing chunks and matched an uninterrupted run")


# --------------------------------------------------------------------------- DVC's view of a killed stage

def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_dvc_sees_a_killed_stage_as_not_done(tmp_path, big_dump):
    ws = tmp_path
    (ws / "params.yaml").write_text(PARAMS)
    (ws / "dvc.yaml").write_text(textwrap.dedent(f"""
        stages:
          corpus:
            cmd: {shlex.join(dvc_stage.command("corpus"))}
            deps: [dump.jsonl]
            params: [corpus]
            outs: [{OUTS[0]}, {OUTS[1]}]
            metrics: [{{metrics/corpus.json: {{cache: false}}}}]
    """))
    make_corpus(ws / "dump.jsonl", 20, seed=1)
    _run(["git", "init", "-q"], ws)
    _run(["dvc", "init", "-q"], ws)
    _run(["dvc", "repro", "-q"], ws)
    assert "up to date" in _run(["dvc", "status"], ws)
    before = {rel: digest(ws / rel) for rel in OUTS}
    lock = (ws / "dvc.lock").read_text()

    (ws / "dump.jsonl").unlink()
    (ws / "dump.jsonl").symlink_to(big_dump)  # a new input: the stage must run again
    proc = subprocess.Popen(["dvc", "repro"], cwd=ws, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: writing(ws), proc, timeout=120)
    kill_group(proc)  # dvc and the stage it runs

    # DVC removes a stage's outputs before running it (they stay in its cache): none or the old ones
    check_outputs(ws, before, "dvc repro SIGKILL mid-write", may_be_gone=True)
    assert (ws / "dvc.lock").read_text() == lock  # the lock still describes the old run
    status = _run(["dvc", "status"], ws)
    assert "corpus:" in status and "changed deps" in status and "dump.jsonl" in status, status
    _run(["dvc", "checkout", "-q"], ws)  # and the previous outputs come back from the cache whole
    assert not ledger.outputs("dvc checkout after a killed repro", before, {rel: digest(ws / rel) for rel in OUTS})
    ledger.fault("SIGKILL", "dvc repro of the corpus stage mid-write",
                 "no half file; dvc.lock unchanged; dvc status: corpus has changed deps; dvc checkout restores the outputs")

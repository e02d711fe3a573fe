"""Kill a real chunked stage (stages/score.py, generate mode, tiny random model) and resume it.

The killed run leaves finished parts behind; the re-run must compute only the missing chunks and
end with exactly the table an uninterrupted run writes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import dvc_stage
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
N_PAIRS, CHUNK = 16, 2
PARAMS = {
    "engine": {"backend": "transformers", "device": "cpu", "dtype": "float32", "batch_size": 2, "cpu_threads": 1},
    "score": {"mode": "generate", "chunk_size": CHUNK, "seed": 3,
              "sampling": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16}},
}


def _workspace(path: Path) -> Path:
    path.mkdir()
    (path / "params.yaml").write_text(json.dumps(PARAMS))  # JSON is YAML
    words = ["whale", "song", "ocean", "krill", "bread", "flour", "oven", "river", "stone", "light"]
    rows = [{"segment_id": f"s{i:03d}", "instruction": f"Tell me about the {words[i % 10]} number {i}.",
             "output": " ".join(words[(i + k) % 10] for k in range(5 + i % 7)) + "."} for i in range(N_PAIRS)]
    pl.DataFrame(rows).write_parquet(path / "candidates.parquet")
    return path


def _cmd(model: Path) -> list[str]:
    return [*dvc_stage.command("score", "it1"), "--model", str(model), "--candidates", "candidates.parquet",
            "--out", "scores/it1.parquet", "--metrics", "metrics/it1.json"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _chunks_computed(log: str) -> set[int]:
    # the engine's progress bar is labelled with the chunk it is working on
    return {int(i) for i in re.findall(r"score chunk (\d+)", log)}


def test_killed_stage_resumes_from_finished_chunks(tiny_model_dir, tmp_path):
    # the uninterrupted reference run goes on beside the killed one: their start-up costs overlap
    clean = _workspace(tmp_path / "clean")
    once_log = tmp_path / "clean.log"
    with open(once_log, "w") as log:
        once = subprocess.Popen(_cmd(tiny_model_dir), cwd=clean, env=_env(), stdout=subprocess.DEVNULL, stderr=log)
    ws = _workspace(tmp_path / "killed")
    parts = ws / "scores" / "it1.parquet.parts"
    proc = subprocess.Popen(_cmd(tiny_model_dir), cwd=ws, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 40
    while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the stage finished before it could be killed: make it longer"

    n_chunks = N_PAIRS // CHUNK
    finished = {int(p.name[5:10]) for p in parts.glob("part-*.parquet")}
    assert finished and len(finished) < n_chunks
    assert not (ws / "scores" / "it1.parquet").exists()
    for i in finished:  # written atomically: every part on disk is a whole table
        assert pl.read_parquet(parts / f"part-{i:05d}.parquet").height == CHUNK

    resumed = subprocess.run(_cmd(tiny_model_dir), cwd=ws, env=_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # (a) only the missing chunks were computed again
    assert _chunks_computed(resumed.stderr) == set(range(n_chunks)) - finished
    assert not parts.exists()

    # (b) the same table as a run that was never interrupted
    assert once.wait(timeout=120) == 0, once_log.read_text()[-3000:]
    assert _chunks_computed(once_log.read_text()) == set(range(n_chunks))
    expected = pl.read_parquet(clean / "scores" / "it1.parquet")
    got = pl.read_parquet(ws / "scores" / "it1.parquet")
    assert got.height == N_PAIRS
    assert got["raw"].null_count() == 0 and got["raw"].list.join("").str.len_chars().sum() > 0  # real generated text
    assert got.equals(expected)


"""Judge faults at the stage level: the judge stage against a local OpenAI-compatible server that
starts failing part-way (HTTP 500, 429, timeouts, garbage). The stage retries with backoff, then
stops with one clear line; the chunks judged before the failure stay in the resumable parts, and a
re-run after the server recovers asks only for the rest and completes.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
import reliability_plugin as ledger
from stub_server import StubServer

pytest_plugins = ["reliability_plugin"]

ROOT = Path(__file__).resolve().parents[1]
N_PROMPTS, CHUNK = 6, 2  # three chunks; each pair is judged in both orders: 4 requests a chunk


class FaultyServer:
    """Answers `healthy` requests correctly, then fails every later one in the way `mode` says."""

    def __init__(self):
        self.mode, self.healthy, self.count = "ok", 10**9, 0
        self.lock = threading.Lock()
        self.stub = StubServer(self._respond, late=self.good())
        self.url = self.stub.url

    def _respond(self, body, n):
        with self.lock:
            self.count += 1
            failing = self.count > self.healthy
        return self.reply(failing)

    @staticmethod
    def good() -> bytes:
        top = [{"token": "1", "logprob": math.log(0.8)}, {"token": "2", "logprob": math.log(0.2)}]
        choice = {"index": 0, "message": {"role": "assistant", "content": "1"}, "finish_reason": "stop",
                  "logprobs": {"content": [{"token": "1", "logprob": math.log(0.8), "top_logprobs": top}]}}
        return json.dumps({"id": "x", "object": "chat.completion", "choices": [choice]}).encode()

    def reply(self, failing: bool):
        if not failing or self.mode == "ok":
            return 200, self.good(), {}
        if self.mode == "500":
            return 500, b'{"error": "internal"}', {}
        if self.mode == "429":
            return 429, b'{"error": "rate limited"}', {"Retry-After": "0.01"}
        if self.mode == "garbage":
            return 200, b"<html>502 Bad Gateway</html>", {}
        return "sleep", 1.0, {}

    def fail_after(self, healthy: int, mode: str) -> None:
        with self.lock:
            self.mode, self.healthy, self.count = mode, healthy, 0

    def close(self):
        self.stub.close()


@pytest.fixture
def server():
    s = FaultyServer()
    yield s
    s.close()


def project(tmp_path: Path, url: str) -> Path:
    out = tmp_path / "data/eval/outputs"
    out.mkdir(parents=True)
    ids = [f"p{i}" for i in range(N_PROMPTS)]
    common = {"prompt_id": ids, "category": ["x"] * N_PROMPTS, "instruction": [f"Question {i}?" for i in ids]}
    pl.DataFrame({**common, "output": [f"model answer {i}" for i in ids], "generator": ["it1"] * N_PROMPTS}
                 ).write_parquet(out / "it1.parquet")
    pl.DataFrame({**common, "output": [f"reference answer {i}" for i in ids], "generator": ["base"] * N_PROMPTS}
                 ).write_parquet(out / "base.parquet")
    (tmp_path / "params.yaml").write_text(
        "engine:\n  openai:\n    max_retries: 2\n    backoff: 0.01\n    timeout: 0.4\n    concurrency: 1\n"
        f"judge:\n  reference: data/eval/outputs/base.parquet\n  model: judge-model\n  base_url: {url}\n  chunk_size: {CHUNK}\n")
    return tmp_path


PARTS = Path("data/eval/judgements/it1.parquet.parts")
METRICS = Path("metrics/eval/it1.json")


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and stderr.strip().splitlines()[-1] == lines[0], stderr[-2000:]
    return lines[0]


def test_judge_stage_fails_clearly_keeps_parts_and_resumes(tmp_path, server):
    ws = project(tmp_path, server.url)
    stage = dvc_stage.command("judge", "it1", ws / "params.yaml")
    server.fail_after(2 * 4 + 1, "500")  # chunks 0 and 1 complete, chunk 2 fails on its second request
    proc = subprocess.run(stage, cwd=ws, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert f"{server.url}/chat/completions" in line and "gave up after 3 attempts" in line and "HTTP 500" in line
    assert "answers received are kept" in line
    assert server.count == 2 * 4 + 1 + 3  # the failing request was tried three times, then the stage stopped
    parts = sorted(p.name for p in (ws / PARTS).glob("part-*.parquet"))
    assert not ledger.outputs("judge stage: chunks judged before an endpoint failure",
                              {"part-00000.parquet": CHUNK, "part-00001.parquet": CHUNK},
                              {p: pl.read_parquet(ws / PARTS / p).height for p in parts})
    assert parts == ["part-00000.parquet", "part-00001.parquet"]
    kept = pl.concat([pl.read_parquet(ws / PARTS / p) for p in parts])
    assert kept.height == 2 * CHUNK and kept["preference"].to_list() == pytest.approx([1.5] * 4)
    assert not (ws / METRICS).exists() and not (ws / "data/eval/judgements/it1.parquet").exists()
    ledger.fault("judge endpoint", "HTTP 500 from the 10th request on",
                 f"exit 2, {line}; 2 of 3 chunks kept in the resumable parts")

    server.fail_after(10**9, "ok")  # the server recovers
    done = subprocess.run(stage, cwd=ws, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert server.count == 4  # only the missing chunk was asked for
    judged = pl.read_parquet(ws / "data/eval/judgements/it1.parquet")
    assert not ledger.outputs("judge stage: resumed after the endpoint recovered",
                              {"judgements": [f"p{i}" for i in range(N_PROMPTS)]},
                              {"judgements": judged["prompt_id"].to_list()})
    # the stub prefers slot 1 at 0.8 in both orders: a pure position bias, cancelled to a tie
    assert judged["preference"].to_list() == pytest.approx([1.5] * N_PROMPTS)
    assert json.loads((ws / METRICS).read_text())["win_rate"] == pytest.approx(50)
    assert not (ws / PARTS).exists()
    ledger.fault("judge endpoint", "re-run after recovery", "asked only for the missing chunk (4 requests); completed")


def run_judge_in_process(ws: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(ws)
    capsys.readouterr()
    try:
        dvc_stage.run("judge", "it1")
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("mode,needle,attempts", [
    ("429", "HTTP 429", 3),
    ("timeout", "timed out after 0.4s", 3),
    ("garbage", "HTTP 200 but the body is not JSON", 1),
])
def test_judge_stage_endpoint_faults(tmp_path, server, monkeypatch, capsys, mode, needle, attempts):
    ws = project(tmp_path, server.url)
    server.fail_after(4, mode)  # chunk 0 completes, chunk 1 fails on its first request
    code, err = run_judge_in_process(ws, monkeypatch, capsys)
    assert code == 2
    line = one_error_line(err)
    assert needle in line and server.url in line
    assert server.count == 4 + attempts  # retried with backoff where retrying can help, not for garbage
    parts = {p.name: pl.read_parquet(p).height for p in (ws / PARTS).glob("part-*.parquet")}
    assert not ledger.outputs(f"judge stage: chunk kept after {mode}", {"part-00000.parquet": CHUNK}, parts)
    assert list(parts) == ["part-00000.parquet"]
    assert not (ws / METRICS).exists()
    ledger.fault("judge endpoint", {"429": "HTTP 429 with Retry-After", "timeout": "replies slower than the timeout",
                                    "garbage": "HTTP 200 with an HTML body"}[mode],
                 f"exit 2 after {attempts} attempt(s), {line}; 1 of 3 chunks kept")

"""The judge through the OpenAI-compatible HTTP engine, against a stub server on 127.0.0.1."""

import json
import math
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
from stub_server import StubServer
from test_eval_fakes import slots

from humpback.config import load_section
from humpback.evaluation.config import JudgeConfig
from humpback.evaluation.judge import PairwiseJudge
from humpback.evaluation.loading import load_judge_engine

ROOT = Path(__file__).resolve().parents[1]


class Stub:
    """Prefers the answer containing GOOD. `logprobs=False` plays an endpoint that only returns text."""

    def __init__(self, logprobs: bool):
        self.logprobs = logprobs
        self.server = StubServer(lambda body, n: (200, self.reply(body), {}))
        self.url = self.server.url

    @property
    def requests(self) -> list[dict]:
        s = self.server
        return [{"path": p, "auth": h.get("Authorization"), **b} for p, h, b in zip(s.paths, s.headers, s.bodies, strict=True)]

    def reply(self, body):
        user = [m for m in body["messages"] if m["role"] == "user"][-1]
        _, a, b = slots([user])
        winner = "1" if "GOOD" in a else "2"
        choice = {"index": 0, "message": {"role": "assistant", "content": f"Better answer: {winner}"},
                  "finish_reason": "stop"}
        if self.logprobs and body.get("logprobs"):
            p = 0.9
            top = [{"token": winner, "logprob": math.log(p)}, {"token": "1" if winner == "2" else "2",
                                                               "logprob": math.log(1 - p)}]
            choice["message"]["content"] = winner
            choice["logprobs"] = {"content": [{"token": winner, "logprob": math.log(p), "top_logprobs": top}]}
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}

    def close(self):
        self.server.close()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("engine:\n  openai:\n    max_retries: 0\n    concurrency: 2\n")
    return tmp_path


def pairs():
    return pl.DataFrame({"prompt_id": ["a", "b", "c"], "category": ["x"] * 3, "instruction": ["i1", "i2", "i3"],
                         "output": ["GOOD answer", "weak", "same"], "reference_output": ["meh", "GOOD ref", "same"]})


@pytest.mark.parametrize("logprobs", [True, False])
def test_openai_judge_against_stub(project, monkeypatch, logprobs):
    stub = Stub(logprobs)
    monkeypatch.setenv("JUDGE_KEY", "sekret")
    try:
        cfg = JudgeConfig(base_url=stub.url, model="judge-model", api_key_env="JUDGE_KEY")
        with load_judge_engine(cfg, "models/unused", load_section("engine", "params.yaml")) as engine:
            out = PairwiseJudge(engine, cfg).judge(pairs())
    finally:
        stub.close()
    first = stub.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["model"] == "judge-model"
    assert first["auth"] == "Bearer sekret"
    if logprobs:
        # soft verdicts: 0.9 for the better answer in each order
        assert out["p_model_first"].to_list()[:2] == pytest.approx([0.9, 0.1])
        assert out["preference"].to_list() == pytest.approx([1.9, 1.1, 1.5])
        assert set(out["method_model_first"][:2]) == {"logprob"}
        assert first["logprobs"] is True and first["messages"][-1] == {"role": "assistant", "content": "Better answer: "}
    else:
        # no logprobs in the reply: the judge falls back to the generated text
        assert out["preference"].to_list() == [2.0, 1.0, 1.5]
        assert set(out["method_model_second"][:2]) == {"text"}
        assert any(r.get("temperature") == 0 and not r.get("logprobs") for r in stub.requests)
    # the identical pair never reached the endpoint
    assert not any("Answer 1:\nsame" in r["messages"][0]["content"] for r in stub.requests)


def test_judge_stage_with_endpoint(project, monkeypatch):
    stub = Stub(True)
    out_dir = Path("data/eval/outputs")
    out_dir.mkdir(parents=True)
    df = pairs()
    df.select("prompt_id", "category", "instruction", "output").with_columns(generator=pl.lit("it1")).write_parquet(
        out_dir / "it1.parquet")
    df.select("prompt_id", "category", "instruction", pl.col("reference_output").alias("output")).with_columns(
        generator=pl.lit("base")).write_parquet(out_dir / "base.parquet")
    with open("params.yaml", "a") as f:
        # `model` stays the local name dvc.yaml depends on; the endpoint serves `served_model`
        f.write(f"judge:\n  base_url: {stub.url}\n  served_model: big-judge\n")
    try:
        dvc_stage.run("judge", "it1")
    finally:
        stub.close()
    m = json.loads(Path("metrics/eval/it1.json").read_text())
    assert m["judge"] == f"big-judge@{stub.url}" and m["win_rate"] == pytest.approx(50)
    assert {r["model"] for r in stub.requests} == {"big-judge"}
    assert m["verdict_methods"] == {"identical": 2, "logprob": 4}

"""The generate and judge stage scripts end to end, with fake engines in place of real models."""

import json
import shutil
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
from test_eval_fakes import AnswerEngine, LongerJudge

from humpback.engines import loader
from humpback.evaluation import loading

ROOT = Path(__file__).resolve().parents[1]


def run_stage(name, monkeypatch, model):
    dvc_stage.run(name, model)


class ModelEngine(AnswerEngine):
    """Answers grow with the model: it1 writes longer answers than base."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def reply(self, messages, sampling):
        extra = " with more detail" * (2 if self.path.name == "it1" else 0)
        return f"{self.path.name} answer to {messages[-1]['content']}{extra} [seed {sampling.seed}]"


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/eval").mkdir(parents=True)
    shutil.copy(ROOT / "data/eval/prompts.jsonl", tmp_path / "data/eval/prompts.jsonl")
    for m in ("base", "it1"):
        (tmp_path / "models" / m).mkdir(parents=True)
    (tmp_path / "params.yaml").write_text(
        "eval:\n  max_prompts: 10\n  chunk_size: 4\n  sampling: {max_new_tokens: 32}\n"
        "prompts:\n  inference_system: SYSTEM TAGS\n"
        "judge:\n  chunk_size: 3\n"
    )
    engines = []

    def fake_model(path, cfg):
        engines.append(ModelEngine(path))
        return engines[-1]

    monkeypatch.setattr(loader, "load_engine", fake_model)
    return tmp_path, engines


def test_generate_writes_outputs_and_alpaca_export(project, monkeypatch):
    root, engines = project
    run_stage("generate", monkeypatch, "it1")
    df = pl.read_parquet(root / "data/eval/outputs/it1.parquet")
    assert df.columns == ["prompt_id", "category", "instruction", "output", "generator"]
    assert df.height == 10 and df["category"].n_unique() == 8 and set(df["generator"]) == {"it1"}
    # the inference system prompt and the eval sampling settings reach the engine
    requests, sampling = engines[0].generate_calls[0]
    assert requests[0][0] == {"role": "system", "content": "SYSTEM TAGS"}
    assert (sampling.temperature, sampling.top_p, sampling.max_new_tokens) == (0.7, 0.9, 32)
    assert [c[1].seed for c in engines[0].generate_calls] == [1234, 1235, 1236]  # seed + chunk index
    assert engines[0].closed
    alpaca = json.loads((root / "data/eval/alpaca/it1.json").read_text())
    assert alpaca[0] == {"instruction": df["instruction"][0], "output": df["output"][0], "generator": "it1",
                         "dataset": df["category"][0]}
    # a re-run gives the same file
    run_stage("generate", monkeypatch, "it1")
    assert pl.read_parquet(root / "data/eval/outputs/it1.parquet").equals(df)


def test_generate_missing_model_is_a_clear_error(project, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        run_stage("generate", monkeypatch, "it2")
    assert e.value.code == 2
    assert "models/it2: model directory not found" in capsys.readouterr().err


def test_judge_against_base(project, monkeypatch):
    root, _ = project
    run_stage("generate", monkeypatch, "base")
    run_stage("generate", monkeypatch, "it1")
    judges = []

    def fake_judge(cfg, judge_dir, engine_cfg):
        judges.append(LongerJudge(scale=1.0))
        return judges[-1]

    monkeypatch.setattr(loading, "load_judge_engine", fake_judge)
    run_stage("judge", monkeypatch, "it1")
    j = pl.read_parquet(root / "data/eval/judgements/it1.parquet")
    assert j.height == 10 and (j["preference"] > 1.99).all()
    m = json.loads((root / "metrics/eval/it1.json").read_text())
    assert m["win_rate"] == pytest.approx(100, abs=0.1) and m["n_total"] == 10
    assert m["judge"] == "models/base" and m["reference"] == "base" and m["unparsed_verdicts"] == 0
    assert m["avg_length"] > m["reference_avg_length"]
    assert judges[0].closed

    # the base model against itself: every pair identical, the judge is never loaded
    judges.clear()
    run_stage("judge", monkeypatch, "base")
    assert judges == []
    assert json.loads((root / "metrics/eval/base.json").read_text())["win_rate"] == 50


def test_judge_against_alpaca_reference_file(project, monkeypatch, capsys):
    root, _ = project
    run_stage("generate", monkeypatch, "it1")
    it1 = pl.read_parquet(root / "data/eval/outputs/it1.parquet")
    ref = [{"instruction": i, "output": "short", "generator": "text_davinci_003", "dataset": "x"}
           for i in it1["instruction"][:4]]
    (root / "davinci.json").write_text(json.dumps(ref))
    with open(root / "params.yaml", "a") as f:
        f.write("  reference: ./davinci.json\n")
    monkeypatch.setattr(loading, "load_judge_engine", lambda cfg, judge_dir, engine_cfg: LongerJudge(scale=1.0))
    run_stage("judge", monkeypatch, "it1")
    m = json.loads((root / "metrics/eval/it1.json").read_text())
    assert m["n_total"] == 4 and m["n_missing_reference"] == 6 and m["reference"] == "davinci"

    (root / "davinci.json").write_text(json.dumps([{"instruction": "unrelated", "output": "x"}]))
    with pytest.raises(SystemExit):
        run_stage("judge", monkeypatch, "it1")
    assert "no reference answer matches" in capsys.readouterr().err

"""Generation and judging through the real transformers engine on the tiny random Llama, checked by
value: a model judged against itself is exactly 50, every verdict is read from the judge's
log-probabilities, swapping which answer is the model's mirrors every preference, and a stage re-run
in another process writes the same bytes."""

import json
import shutil
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

from humpback.engines.config import EngineConfig
from humpback.engines.loader import load_engine
from humpback.evaluation.config import JudgeConfig
from humpback.evaluation.judge import PairwiseJudge, summarise

ROOT = Path(__file__).resolve().parents[1]
CPU = EngineConfig(backend="transformers", device="cpu", dtype="float32", cpu_threads=1)
ANSWERS = [
    "Paris is the capital of France.",
    "Boil the water, add the pasta, drain it after nine minutes.",
    "Seven is prime: its only divisors are one and seven.",
    "Plants turn light into sugar.",
    "Use a list comprehension; it is shorter than a loop.",
]


def _pairs(outputs, references) -> pl.DataFrame:
    n = len(outputs)
    return pl.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "category": ["c"] * n,
                         "instruction": [f"Answer question {i}." for i in range(n)],
                         "output": outputs, "reference_output": references})


@pytest.fixture(scope="module")
def judge(tiny_model_dir):
    with load_engine(tiny_model_dir, CPU) as engine:
        yield PairwiseJudge(engine, JudgeConfig())


def test_the_real_judge_reads_every_verdict_and_mirrors_a_swap(judge):
    a, b = ANSWERS, ANSWERS[1:] + ANSWERS[:1]  # every prompt gets two different answers
    ab, ba = judge.judge(_pairs(a, b)), judge.judge(_pairs(b, a))
    for j in (ab, ba):
        assert set(j["method_model_first"]) | set(j["method_model_second"]) == {"logprob"}
        assert j["p_model_first"].is_between(0, 1, closed="none").all()
        assert j["p_model_second"].is_between(0, 1, closed="none").all()
    # a is the model's answer in ab and the reference in ba: both orders were asked in both runs, so
    # the preferences are exact mirrors (1 + P(a wins) against 1 + P(b wins))
    assert (ab["preference"] + ba["preference"]).to_list() == pytest.approx([3.0] * len(a), abs=1e-9)
    m_ab = summarise(ab, judge="tiny", reference="b")
    m_ba = summarise(ba, judge="tiny", reference="a")
    assert m_ab["unparsed_verdicts"] == m_ba["unparsed_verdicts"] == 0
    assert m_ab["win_rate"] + m_ba["win_rate"] == pytest.approx(100, abs=1e-9)
    # each preference averages two orders of one pair: slot 1 of order 1 is slot 2 of order 2
    assert ab["p_model_first"].to_list() == pytest.approx((1 - ba["p_model_second"]).to_list(), abs=1e-9)


def test_the_real_judge_gives_a_model_against_itself_exactly_50(judge):
    j = judge.judge(_pairs(ANSWERS, ANSWERS))
    m = summarise(j, judge="tiny", reference="itself")
    assert m["win_rate"] == 50.0 and m["n_draws"] == len(ANSWERS) == m["n_identical"]
    assert m["unparsed_verdicts"] == 0 and m["ci_low"] == m["ci_high"] == 50.0


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_model_dir, tiny_lora_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/eval").mkdir(parents=True)
    shutil.copy(ROOT / "data/eval/prompts.jsonl", tmp_path / "data/eval/prompts.jsonl")
    shutil.copytree(tiny_model_dir, tmp_path / "models/base")
    shutil.copytree(tiny_lora_dir, tmp_path / "models/it1")  # an adapter over the tiny base, weights non-zero
    (tmp_path / "params.yaml").write_text(
        "engine: {backend: transformers, device: cpu, dtype: float32, cpu_threads: 1}\n"
        "eval:\n  max_prompts: 6\n  chunk_size: 4\n  sampling: {max_new_tokens: 12}\n"
        "judge:\n  chunk_size: 4\n"
    )
    return tmp_path


def _bytes(root: Path, *paths: str) -> dict[str, bytes]:
    return {p: (root / p).read_bytes() for p in paths}


def test_generate_and_judge_stages_rerun_byte_identical_in_another_process(project):
    for model in ("base", "it1"):
        dvc_stage.run("generate", model)
    dvc_stage.run("judge", "base")
    dvc_stage.run("judge", "it1")
    base = json.loads((project / "metrics/eval/base.json").read_text())
    assert base["win_rate"] == 50.0 and base["n_identical"] == base["n_total"] == 6
    it1 = json.loads((project / "metrics/eval/it1.json").read_text())
    outputs = pl.read_parquet(project / "data/eval/outputs/it1.parquet")
    reference = pl.read_parquet(project / "data/eval/outputs/base.parquet")
    assert outputs.height == 6 and outputs["output"].str.len_chars().min() > 0
    differ = int((outputs["output"] != reference["output"]).sum())
    assert differ > 0 and it1["n_identical"] == 6 - differ  # the adapter changed the answers
    assert it1["unparsed_verdicts"] == 0 and set(it1["verdict_methods"]) <= {"logprob", "identical"}
    files = ("data/eval/outputs/it1.parquet", "data/eval/alpaca/it1.json",
             "data/eval/judgements/it1.parquet", "metrics/eval/it1.json")
    first = _bytes(project, *files)
    for stage in ("generate", "judge"):
        proc = dvc_stage.run_subprocess(stage, "it1", cwd=project, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert _bytes(project, *files) == first

"""The ray backend for real on CPUs: a local Ray instance with two CPUs and no GPU, two replicas of
the transformers backend (what `engine.ray.replica: auto` picks there), one CPU and one torch thread
each, on a tiny random Llama. They must answer as the in-process transformers backend does: the same
greedy text, the same samples for the same seed (each request's seed follows its place in the call,
however the requests are dealt), the same scoring log-probabilities, with and without a LoRA adapter."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from humpback import ledger  # noqa: E402
from humpback.engines.base import Sampling  # noqa: E402
from humpback.engines.config import EngineConfig, RayConfig  # noqa: E402
from humpback.engines.loader import load_engine  # noqa: E402
from humpback.io import write_json  # noqa: E402
from humpback.models import META  # noqa: E402
from humpback.prompts import chat  # noqa: E402

DIGITS = ["1", "2", "3", "4", "5"]
GREEDY = Sampling(temperature=0.0, max_new_tokens=8, seed=0)
SAMPLED = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=8, seed=3)
LOCAL = EngineConfig(backend="transformers", device="cpu", dtype="float32", batch_size=2, cpu_threads=1)
# 2 replicas x 1 CPU fill the instance; batches of 3 deal 10 requests unevenly between them
RAY = EngineConfig(backend="ray", dtype="float32", batch_size=2, ray=RayConfig(num_replicas=2, num_cpus=1, batch_size=3))


@pytest.fixture(scope="module")
def cluster():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its own random output layer: with tied embeddings a random model's greedy
    reply repeats the template's last token, which decodes to nothing, and every answer would match."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("models") / "untied"
    shutil.copytree(tiny_model_dir, out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    model.config.tie_word_embeddings = False
    torch.manual_seed(0)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_dir(model_dir, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("models") / "lora"
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                    init_lora_weights=False)).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(model_dir / name, out / name)
    write_json({"kind": "adapter", "base": str(model_dir)}, out / META)
    return out


def _requests(n: int = 10):
    # lengths differ a lot, so each engine sorts and pads its own batches differently
    return [chat(f"Question {i}: " + "tell me more " * (i * 3 % 11)) for i in range(n)]


def _answers(engine) -> tuple:
    reqs = _requests()
    return (engine.generate(reqs, GREEDY), engine.generate(reqs, SAMPLED),
            engine.choice_logprobs(reqs, DIGITS, assistant_prefix="Score: "))


def _same_scores(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)  # another batch shares another prompt head: float noise only


def _compare(model) -> list[dict]:
    """Run the same requests in process and on two Ray replicas; returns the in-process scores."""
    before = ledger.snapshot()
    with load_engine(model, LOCAL) as local:
        greedy, sampled, scores = _answers(local)
    local_counts, before = ledger.snapshot().minus(before), ledger.snapshot()
    assert len(set(greedy)) > 5 and len(set(sampled)) > 5 and greedy != sampled  # varied text: a real comparison
    with load_engine(model, RAY) as e:
        assert e.kind == "transformers"  # replica auto on a cluster without GPUs
        where = ray.get([r.__ray_call__.remote(
            lambda rep: (rep.engine.device, __import__("torch").get_num_threads(), __import__("os").getpid()))
            for r in e.replicas])
        got_greedy, got_sampled, got_scores = _answers(e)
    # the replicas' work is counted once, in this process, as the in-process engine counts it
    assert ledger.snapshot().minus(before) == local_counts and local_counts.examples == 3 * len(_requests())
    assert ledger.noted_device()["type"] == "cpu" and ledger.noted_device()["count"] == 2  # 2 replicas x 1 thread
    assert [w[:2] for w in where] == [("cpu", 1)] * 2 and len({w[2] for w in where}) == 2
    assert got_greedy == greedy
    assert got_sampled == sampled
    _same_scores(got_scores, scores)
    # a closed engine gives its CPUs back for the next one (Ray frees them once the actors have exited)
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU") != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU") == 2
    return scores


def test_cpu_replicas_answer_as_the_transformers_backend(cluster, model_dir):
    _compare(model_dir)


def test_cpu_replicas_apply_a_lora_adapter(cluster, model_dir, lora_dir):
    with load_engine(model_dir, LOCAL) as local:
        base = local.choice_logprobs(_requests(), DIGITS, assistant_prefix="Score: ")
    scores = _compare(lora_dir)
    assert any(abs(a["5"] - b["5"]) > 1e-3 for a, b in zip(scores, base, strict=True))  # not the base model's


@pytest.mark.slow
def test_a_stage_on_cpu_replicas_writes_what_the_transformers_backend_writes(cluster, model_dir, lora_dir, tmp_path,
                                                                               monkeypatch):
    """The eval stages as a user runs them with `engine.backend: ray` on CPUs: sampled answers of a LoRA
    model, then a judge reading log-probabilities. About a minute: three engines start on each side."""
    import json

    import dvc_stage
    import polars as pl

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/eval").mkdir(parents=True)
    shutil.copy(root / "data/eval/prompts.jsonl", tmp_path / "data/eval/prompts.jsonl")
    shutil.copytree(model_dir, tmp_path / "models/base")
    shutil.copytree(lora_dir, tmp_path / "models/it1")
    written = {}
    for engine in ("{backend: transformers, device: cpu, dtype: float32, cpu_threads: 1, batch_size: 2}",
                   "{backend: ray, dtype: float32, batch_size: 2, ray: {num_replicas: 2, batch_size: 3}}"):
        (tmp_path / "params.yaml").write_text(f"engine: {engine}\neval:\n  max_prompts: 8\n  chunk_size: 8\n"
                                              "  sampling: {max_new_tokens: 8}\njudge:\n  chunk_size: 8\n")
        shutil.rmtree(tmp_path / "metrics", ignore_errors=True)
        shutil.rmtree(tmp_path / "data/eval/outputs", ignore_errors=True)
        shutil.rmtree(tmp_path / "data/eval/judgements", ignore_errors=True)
        for model in ("base", "it1"):
            dvc_stage.run("generate", model)
        dvc_stage.run("judge", "it1")
        written[engine] = (pl.read_parquet("data/eval/outputs/it1.parquet"),
                           pl.read_parquet("data/eval/judgements/it1.parquet"),
                           json.loads(Path("metrics/eval/it1.json").read_text()))
    (outputs, judgements, metrics), (ray_outputs, ray_judgements, ray_metrics) = written.values()
    assert outputs["output"].n_unique() > 4 and ray_outputs.equals(outputs)  # sampled at T 0.7, seeded per request
    verdicts = ["verdict_model_first", "verdict_model_second", "method_model_first", "method_model_second"]
    assert ray_judgements.select(verdicts).equals(judgements.select(verdicts))
    for column in ("p_model_first", "p_model_second", "preference"):
        assert ray_judgements[column].to_list() == pytest.approx(judgements[column].to_list(), abs=1e-4)
    assert metrics["verdict_methods"] == ray_metrics["verdict_methods"] == {"logprob": 16}
    assert ray_metrics == {k: pytest.approx(v, abs=1e-3) if isinstance(v, float) else v for k, v in metrics.items()}

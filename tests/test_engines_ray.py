"""The Ray Data backend on a local Ray cluster (CPU): real Ray Data carries the rows, and the real
vLLMEngineProcessorConfig is built; only the vLLM stage itself, which needs a GPU, is replaced by a
map that echoes what it was sent. Checked: the processor config, the rendered and fitted prompts,
the sampling parameters, LoRA adapters named per row, and that answers come back in request order
however Ray orders the rows."""

from __future__ import annotations

import ast
import sys

import pytest

ray = pytest.importorskip("ray")
ray_llm = pytest.importorskip("ray.data.llm")

from humpback.engines.base import Sampling  # noqa: E402
from humpback.engines.config import EngineConfig, RayConfig  # noqa: E402
from humpback.engines.loader import load_engine  # noqa: E402
from humpback.models import load_tokenizer, resolve  # noqa: E402
from humpback.prompts import chat  # noqa: E402
from humpback.rendering import encode, for_server  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    # Ray's workers cannot import a test module: send this one's functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _echo_vllm(row: dict) -> dict:
    """What the vLLM stage would return, made of what it was sent."""
    p = row["sampling_params"]
    head = f"{row.get('model', '-')}|t={p['temperature']}|p={p['top_p']}|n={p['max_tokens']}|s={p['seed']}"
    return {**row, "generated_text": f"  {head}|{row['prompt']!r}  "}


@pytest.fixture
def processors(monkeypatch):
    """Every processor the engine builds, run by real Ray Data with the rows shuffled before postprocess."""
    built = []

    def build(config, preprocess=None, postprocess=None):
        built.append(config)
        return lambda ds: ds.map(preprocess).map(_echo_vllm).random_shuffle(seed=7).map(postprocess)

    name = "build_processor" if hasattr(ray_llm, "build_processor") else "build_llm_processor"
    monkeypatch.setattr(ray_llm, name, build)
    return built


def _cfg(**kw) -> EngineConfig:
    return EngineConfig(backend="ray", ray=RayConfig(num_replicas=2, batch_size=4), **kw)


def _fields(text: str) -> dict:
    model, t, p, n, s, prompt = text.split("|", 5)
    return {"model": model, "temperature": float(t[2:]), "top_p": float(p[2:]), "max_tokens": int(n[2:]),
            "seed": int(s[2:]), "prompt": ast.literal_eval(prompt)}


def test_answers_come_back_in_request_order_with_the_rendered_prompts(cluster, processors, tiny_model_dir):
    reqs = [chat(f"Question number {i}: what is {i} plus {i}?") for i in range(12)]
    with load_engine(tiny_model_dir, _cfg()) as e:
        out = e.generate(reqs, Sampling(temperature=0.7, top_p=0.9, max_new_tokens=16, seed=5))
        assert e.generate([], Sampling()) == []
        with pytest.raises(NotImplementedError):
            e.choice_logprobs(reqs[:1], ["1", "2"])
    (config,) = processors
    assert config.model_source == str(resolve(tiny_model_dir).base) and config.concurrency == 2
    assert config.batch_size == 4 and not config.engine_kwargs.get("enable_lora")
    tok = load_tokenizer(resolve(tiny_model_dir))
    for i, (req, text) in enumerate(zip(reqs, out, strict=True)):
        f = _fields(text)
        assert text == text.strip() and f["prompt"] == for_server(tok, tok.decode(encode(tok, req)))
        assert f"Question number {i}:" in f["prompt"]
        assert (f["model"], f["temperature"], f["top_p"], f["max_tokens"], f["seed"]) == ("-", 0.7, 0.9, 16, 5)


def test_greedy_sampling_and_prompts_fitted_to_the_input_budget(cluster, processors, tiny_model_dir):
    long = chat("word " * 3000 + "the end")
    with load_engine(tiny_model_dir, _cfg(max_input_tokens=64)) as e:
        (text,) = e.generate([long], Sampling(temperature=0.0, top_p=0.5, max_new_tokens=8, seed=1))
        tok = e.tok
    f = _fields(text)
    assert (f["temperature"], f["top_p"]) == (0.0, 1.0)  # greedy ignores top_p
    n = len(tok(f["prompt"], add_special_tokens=False)["input_ids"])
    assert 32 < n <= 64 + 2  # cut to the budget (a token or two may re-merge at the cut)


def test_a_lora_adapter_is_named_in_every_row(cluster, processors, tiny_lora_dir):
    with load_engine(tiny_lora_dir, _cfg()) as e:
        out = e.generate([chat("hi"), chat("there")], Sampling(temperature=0.0, max_new_tokens=4))
    (config,) = processors
    ref = resolve(tiny_lora_dir)
    assert config.model_source == str(ref.base) and config.engine_kwargs["enable_lora"] is True
    assert config.dynamic_lora_loading_path == str(tiny_lora_dir.resolve().parent)
    assert [_fields(t)["model"] for t in out] == [tiny_lora_dir.name] * 2

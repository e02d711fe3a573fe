"""The vLLM backend for real: only where a CUDA GPU and vllm exist (`pytest -m gpu`)."""

from __future__ import annotations

import importlib.util
import math

import pytest

from humpback.engines.base import Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.loader import load_engine
from humpback.prompts import chat

pytestmark = pytest.mark.gpu


def _have_gpu_and_vllm() -> bool:
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


requires = pytest.mark.skipif(not _have_gpu_and_vllm(), reason="needs a CUDA GPU and vllm")
DIGITS = ["1", "2", "3", "4", "5"]


@pytest.fixture(scope="module")
def embedded_dir(tmp_path_factory):
    from humpback.models import BaseModelConfig, prepare_base

    out = tmp_path_factory.mktemp("models") / "base"
    prepare_base(BaseModelConfig(), out)
    return out


def _cfg(**vllm) -> EngineConfig:
    cfg = EngineConfig(backend="vllm", max_input_tokens=1024)
    cfg.vllm.gpu_memory_utilization = 0.3
    cfg.vllm.max_model_len = 2048
    cfg.vllm.enforce_eager = True
    for k, v in vllm.items():
        setattr(cfg.vllm, k, v)
    return cfg


@requires
def test_vllm_generates_and_scores_like_transformers(embedded_dir):
    reqs = [chat("What is the capital of France?"), chat("Name a primary colour.")]
    rate = [chat("Reply with a digit from 1 to 5: how good is this answer? 'Paris is in France.'")]
    with load_engine(embedded_dir, _cfg()) as e:
        assert e.name == "vllm"
        out = e.generate(reqs, Sampling(temperature=0.0, max_new_tokens=24))
        sampled = e.generate(reqs, Sampling(max_new_tokens=16, seed=3))
        assert e.generate(reqs, Sampling(max_new_tokens=16, seed=3)) == sampled  # seeded
        (scores,) = e.choice_logprobs(rate, DIGITS, assistant_prefix="Score: ")
    assert "paris" in out[0].lower()
    best = max(scores, key=scores.get)
    assert math.isfinite(scores[best])
    from vllm import SamplingParams

    from humpback.engines.vllm_engine import _takes_token_ids

    if _takes_token_ids(SamplingParams):  # exact log-probabilities: no digit falls outside a top-k
        assert all(math.isfinite(scores[d]) for d in DIGITS), scores
    with load_engine(embedded_dir, EngineConfig(backend="transformers", device="cuda", dtype="bfloat16")) as hf:
        (ref,) = hf.choice_logprobs(rate, DIGITS, assistant_prefix="Score: ")
    assert max(ref, key=ref.get) == best
    assert scores[best] == pytest.approx(ref[best], abs=0.15)


@requires
def test_vllm_serves_a_lora_adapter(embedded_dir, tmp_path):
    """An adapter with non-zero weights changes the model, and vLLM applies it as PEFT does: the
    rating distribution through the adapter matches the transformers engine's, and not the base's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from humpback.io import write_json
    from humpback.models import META

    adapter = tmp_path / "lora"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(embedded_dir)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))  # random A and B: not the identity
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(20.0)  # large enough to move the next-token distribution
    peft.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(adapter)
    write_json({"kind": "adapter", "base": str(embedded_dir)}, adapter / META)
    rate = [chat("Reply with a digit from 1 to 5: how good is this answer? 'Paris is in France.'")]
    with load_engine(adapter, _cfg(max_lora_rank=8)) as e:
        assert e.lora is not None
        (through_vllm,) = e.choice_logprobs(rate, DIGITS, assistant_prefix="Score: ")
    hf = EngineConfig(backend="transformers", device="cuda", dtype="bfloat16")
    with load_engine(adapter, hf) as t:
        (through_peft,) = t.choice_logprobs(rate, DIGITS, assistant_prefix="Score: ")
    with load_engine(embedded_dir, hf) as b:
        (base,) = b.choice_logprobs(rate, DIGITS, assistant_prefix="Score: ")
    gap = max(abs(through_peft[d] - base[d]) for d in DIGITS)
    assert gap > 0.5, "the adapter should move the distribution"
    for d in DIGITS:
        assert through_vllm[d] == pytest.approx(through_peft[d], abs=0.15)


@requires
def test_vllm_data_parallel_replicas_keep_order(embedded_dir):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    reqs = [chat(f"Repeat the number {i} and nothing else.") for i in range(8)]
    with load_engine(embedded_dir, _cfg(data_parallel_size=2)) as e:
        out = e.generate(reqs, Sampling(temperature=0.0, max_new_tokens=8))
    assert sum(str(i) in text for i, text in enumerate(out)) >= 6

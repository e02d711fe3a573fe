"""Shared fixtures. Models are built once per test session (a tiny random Llama takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A models/base-like directory holding a random tiny Llama with the embedded tokenizer."""
    from humpback.models import BaseModelConfig, prepare_base

    out = tmp_path_factory.mktemp("models") / "base"
    prepare_base(BaseModelConfig(source="tiny"), out)
    return out


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter over `tiny_model_dir` with random (non-zero) weights, saved as training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from humpback.io import write_json
    from humpback.models import META

    out = tmp_path_factory.mktemp("models") / "lora"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    write_json({"kind": "adapter", "base": str(tiny_model_dir)}, out / META)
    return out

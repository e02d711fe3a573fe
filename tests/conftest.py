"""Shared fixtures. Models are built once per test session (a tiny random Llama takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _built_once(out: Path) -> None:
    """prepare_base(tiny) into `out`, from a per-machine cache: building it reads the embedded GGUF's
    tokenizer (about 15 s), which every test process (each xdist worker, each mutant under mutmut)
    would otherwise pay. The cache key is everything that decides the files: the code that builds
    them and the library versions."""
    import contextlib
    import hashlib
    import os
    import shutil
    import tempfile

    import torch
    import transformers

    from humpback import models, rendering
    from humpback.models import BaseModelConfig, prepare_base

    cfg = BaseModelConfig(source="tiny")
    key = hashlib.sha256(b"".join([Path(models.__file__).read_bytes(), Path(rendering.__file__).read_bytes(),
                                   repr(cfg).encode(), transformers.__version__.encode(),
                                   torch.__version__.encode()])).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "humpback-tests"
    cached = root / f"tiny-{key}"
    if not cached.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
        prepare_base(cfg, staging / "base")
        with contextlib.suppress(OSError):  # the rename is atomic; another process may have won the race
            (staging / "base").rename(cached)
        shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(cached, out)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A models/base-like directory holding a random tiny Llama with the embedded tokenizer."""
    out = tmp_path_factory.mktemp("models") / "base"
    _built_once(out)
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

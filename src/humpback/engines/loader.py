"""Opening an engine: `load_engine(model_dir, engine_cfg)` picks the backend (the `engine` section) and loads it."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from humpback.engines.base import Engine
from humpback.engines.config import EngineConfig

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def select_backend(cfg: EngineConfig) -> str:
    """`auto` means vLLM when a CUDA GPU and vllm are both present, else transformers."""
    if cfg.backend != "auto":
        return cfg.backend
    return "vllm" if cuda_available() and vllm_available() else "transformers"


def completions_tokenizer(model_dir: str | Path):
    """The tokenizer a completions endpoint's prompts are rendered with: the served model's own
    directory when it is here (its template is what it was trained on), else None (plain format)."""
    from humpback.models import load_tokenizer, resolve

    d = Path(model_dir)
    if not (d.is_dir() and any((d / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "humpback_model.json"))):
        return None
    return load_tokenizer(resolve(d))


def load_engine(model_dir: str | Path, cfg: EngineConfig | None = None) -> Engine:
    """Load the model in `model_dir` (checkpoint, LoRA adapter or pointer) with the configured backend.

    With backend `openai` nothing is loaded: the endpoint serves `engine.openai.model`, or a model
    named like the directory when that is empty.
    """
    cfg = cfg or EngineConfig()
    backend = select_backend(cfg)
    log.info("engine backend: %s (%s)", backend, model_dir)
    if backend == "transformers":
        from humpback.engines.transformers_engine import TransformersEngine

        return TransformersEngine(model_dir, cfg)
    if backend == "vllm":
        from humpback.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model_dir, cfg)
    if backend == "openai":
        from humpback.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(cfg.openai, model=cfg.openai.model or Path(model_dir).name,
                            tokenizer=completions_tokenizer(model_dir) if cfg.openai.api == "completions" else None,
                            max_input_tokens=cfg.max_input_tokens)
    if backend == "ray":
        from humpback.engines.ray_engine import RayEngine

        return RayEngine(model_dir, cfg)
    raise ValueError(f"unknown engine backend {backend!r}")

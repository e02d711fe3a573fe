"""Where the evaluation stages get their engines and their reference answers from."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from humpback.config import load_section
from humpback.engines.base import Engine
from humpback.errors import InputError
from humpback.evaluation.config import JudgeConfig

MODELS_DIR = Path("models")
OUTPUTS_DIR = Path("data/eval/outputs")


def model_dir(name: str) -> Path:
    """A plain name (base, m0, it1) means models/<name>; anything with a slash is a directory path."""
    path = Path(name) if ("/" in name or os.sep in name) else MODELS_DIR / name
    if not path.exists():
        raise InputError(path, "model directory not found (run the stage that trains it first)")
    return path


def load_model_engine(path: str | Path, params: str | Path = "params.yaml") -> Engine:
    """A local model through the configured backend (the `engine` section)."""
    from humpback.engines import load_engine

    return load_engine(path, load_section("engine", params))


def judge_name(cfg: JudgeConfig) -> str:
    return f"{cfg.model}@{cfg.base_url}" if cfg.base_url else str(model_dir(cfg.model))


def load_judge_engine(cfg: JudgeConfig, params: str | Path = "params.yaml") -> Engine:
    """The judge: an OpenAI-compatible endpoint when base_url is set, else a local model."""
    if cfg.base_url:
        from humpback.engines.openai_engine import OpenAIEngine

        # retries, timeout and concurrency come from engine.openai; the endpoint from the judge section
        http = dataclasses.replace(load_section("engine", params).openai, base_url=cfg.base_url, model=cfg.model,
                                   api_key_env=cfg.api_key_env)
        return OpenAIEngine(http, model=cfg.model)
    return load_model_engine(model_dir(cfg.model), params)


def reference_path(reference: str) -> tuple[Path, str]:
    """(file, name) of the reference answers: a model name -> its outputs Parquet, else a path."""
    if "/" in reference or os.sep in reference or Path(reference).suffix:
        path = Path(reference)
        return path, path.stem
    return OUTPUTS_DIR / f"{reference}.parquet", reference

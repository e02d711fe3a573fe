"""Where the evaluation stages get their engines from: a local model directory or an endpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from humpback.config import load_section
from humpback.engines import loader
from humpback.engines.base import Engine
from humpback.errors import InputError
from humpback.evaluation.config import JudgeConfig


def model_dir(path: str | Path) -> Path:
    """A model directory that must exist (the stage that trains it has run)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "model directory not found (run the stage that trains it first)")
    return path


def judge_name(cfg: JudgeConfig, judge_dir: str | Path) -> str:
    return f"{cfg.model}@{cfg.base_url}" if cfg.base_url else str(model_dir(judge_dir))


def load_judge_engine(cfg: JudgeConfig, judge_dir: str | Path, params: str | Path) -> Engine:
    """The judge: an OpenAI-compatible endpoint when base_url is set, else the local model in `judge_dir`."""
    if cfg.base_url:
        from humpback.engines.openai_engine import OpenAIEngine

        # retries, timeout and concurrency come from engine.openai; the endpoint from the judge section
        http = dataclasses.replace(load_section("engine", params).openai, base_url=cfg.base_url, model=cfg.model,
                                   api_key_env=cfg.api_key_env)
        return OpenAIEngine(http, model=cfg.model)
    return loader.open_engine(model_dir(judge_dir), params)

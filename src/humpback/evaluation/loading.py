"""Where the evaluation stages get their engines from: a local model directory or an endpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from humpback.engines import loader
from humpback.engines.base import Engine
from humpback.engines.config import EngineConfig
from humpback.errors import InputError, redact_url
from humpback.evaluation.config import JudgeConfig


def model_dir(path: str | Path) -> Path:
    """A model directory that must exist (the stage that trains it has run)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "model directory not found (run the stage that trains it first)")
    return path


def served_name(cfg: JudgeConfig) -> str:
    return cfg.served_model or cfg.model


def judge_name(cfg: JudgeConfig, judge_dir: str | Path) -> str:
    """The judge as the metrics name it: the served model at the endpoint without its credentials."""
    return f"{served_name(cfg)}@{redact_url(cfg.base_url)}" if cfg.base_url else str(model_dir(judge_dir))


def judge_engine_config(cfg: JudgeConfig, engine_cfg: EngineConfig) -> EngineConfig:
    """The engine settings the judge runs with: with `judge.base_url`, the endpoint the judge section
    names (retries, timeout and concurrency still from engine.openai); else `engine` as it is."""
    if not cfg.base_url:
        return engine_cfg
    return dataclasses.replace(engine_cfg, backend="openai", openai=dataclasses.replace(
        engine_cfg.openai, base_url=cfg.base_url, model=served_name(cfg), api_key_env=cfg.api_key_env, api=cfg.api))


def load_judge_engine(cfg: JudgeConfig, judge_dir: str | Path, engine_cfg: EngineConfig) -> Engine:
    """The judge: an OpenAI-compatible endpoint when base_url is set, else the local model in `judge_dir`."""
    if cfg.base_url:
        from humpback.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(judge_engine_config(cfg, engine_cfg).openai, model=served_name(cfg))
    return loader.load_engine(model_dir(judge_dir), engine_cfg)

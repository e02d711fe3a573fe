"""vLLM backend (GPU): the offline `LLM` with `SamplingParams`, LoRA adapters through `LoRARequest`.

Prompts are rendered with the model's chat template here (the same code the transformers backend
uses, length fitting included) and handed to vLLM as token ids, so both backends see identical
prompts. `tensor_parallel_size` shards one model over GPUs; `data_parallel_size` > 1 starts that
many replicas, each in its own process pinned to its own GPUs, and splits the requests among them.
vllm is imported lazily: it is the optional `gpu` extra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
from collections.abc import Sequence
from pathlib import Path

from humpback.engines.base import Engine, EngineError, Messages, Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.prompting import choice_plan, logsumexp
from humpback.errors import ConfigError
from humpback.models import load_tokenizer, resolve
from humpback.rendering import encode

log = logging.getLogger(__name__)

TOP_LOGPROBS = 20  # vLLM's default max_logprobs


def engine_kwargs(cfg: EngineConfig, *, lora: bool) -> dict:
    """The vLLM engine settings from `engine.vllm`, shared by the local and the Ray Data backends."""
    v = cfg.vllm
    kwargs: dict = dict(
        tensor_parallel_size=v.tensor_parallel_size,
        gpu_memory_utilization=v.gpu_memory_utilization,
        enable_prefix_caching=v.enable_prefix_caching,
        enforce_eager=v.enforce_eager,
    )
    if v.max_model_len:
        kwargs["max_model_len"] = v.max_model_len
    if lora:
        kwargs.update(enable_lora=True, max_lora_rank=v.max_lora_rank, max_loras=1)
    return kwargs


class LocalVLLM(Engine):
    """One vLLM engine in this process."""

    name = "vllm"

    def __init__(self, model_dir: str | Path, cfg: EngineConfig):
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise ConfigError("engine.backend is 'vllm' but vllm is not installed: pip install 'humpback[gpu]'") from None

        self.cfg = cfg
        self.ref = resolve(model_dir)
        kwargs = engine_kwargs(cfg, lora=bool(self.ref.adapter))
        kwargs.update(
            model=self.ref.base,
            dtype=cfg.dtype,  # "auto" is vLLM's own default too
            max_logprobs=TOP_LOGPROBS,
            seed=0,
        )
        self.lora = LoRARequest(Path(self.ref.adapter).name, 1, self.ref.adapter) if self.ref.adapter else None
        self.llm = LLM(**kwargs)
        # The adapter directory's tokenizer carries the chat template the adapter was trained with.
        self.tok = load_tokenizer(self.ref)
        model_config = getattr(self.llm, "model_config", None) or self.llm.llm_engine.model_config
        self.max_len = int(model_config.max_model_len)

    def _budget(self, reply_tokens: int) -> int:
        room = self.max_len - reply_tokens
        return min(self.cfg.max_input_tokens, room) if self.cfg.max_input_tokens > 0 else room

    def _run(self, prompts: list[list[int]], params):
        if not prompts:
            return []
        return self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=True, lora_request=self.lora
        )

    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        from vllm import SamplingParams

        sample = sampling.temperature > 0
        params = SamplingParams(
            temperature=sampling.temperature if sample else 0.0,
            top_p=sampling.top_p if sample else 1.0,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        budget = self._budget(sampling.max_new_tokens)
        outs = self._run([encode(self.tok, m, max_tokens=budget) for m in requests], params)
        return [o.outputs[0].text.strip() for o in outs]

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        from vllm import SamplingParams

        prefix, token_ids = choice_plan(self.tok, assistant_prefix, choices)
        params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)
        budget = self._budget(1)
        outs = self._run([encode(self.tok, m, prefix, max_tokens=budget) for m in requests], params)
        result = []
        for o in outs:
            # logprobs[0]: token id -> Logprob for the top tokens (and the sampled one) at step 0
            top = o.outputs[0].logprobs[0]
            result.append(
                {c: logsumexp([top[t].logprob for t in token_ids[c] if t in top]) if token_ids[c] else -math.inf
                 for c in choices}
            )
        return result

    def close(self) -> None:
        self.llm = None


# -- data-parallel replicas -------------------------------------------------------------------------


def _replica(conn, gpus: str, model_dir: str, cfg: EngineConfig) -> None:
    """Worker process: own GPUs only, one LocalVLLM, answer (method, args, kwargs) until told to stop."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        engine = LocalVLLM(model_dir, cfg)
        conn.send(("ready", None))
    except Exception as e:  # reported to the parent, which raises it with context
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        msg = conn.recv()
        if msg is None:
            break
        method, args, kwargs = msg
        try:
            conn.send(("ok", getattr(engine, method)(*args, **kwargs)))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))
    engine.close()


class ReplicatedVLLM(Engine):
    """`data_parallel_size` LocalVLLM processes; requests dealt round-robin, answers put back in order."""

    name = "vllm"

    def __init__(self, model_dir: str | Path, cfg: EngineConfig):
        import torch

        v = cfg.vllm
        need, have = v.data_parallel_size * v.tensor_parallel_size, torch.cuda.device_count()
        if need > have:
            raise ConfigError(
                f"engine.vllm: data_parallel_size {v.data_parallel_size} x tensor_parallel_size "
                f"{v.tensor_parallel_size} needs {need} GPUs, {have} visible"
            )
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(have)))).split(",")
        ctx = mp.get_context("spawn")  # CUDA cannot be forked
        self.workers = []
        for r in range(v.data_parallel_size):
            gpus = ",".join(visible[r * v.tensor_parallel_size : (r + 1) * v.tensor_parallel_size])
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_replica, args=(child, gpus, str(model_dir), cfg), daemon=True)
            proc.start()
            self.workers.append((proc, parent))
        for r, (_, conn) in enumerate(self.workers):
            status, err = conn.recv()
            if status != "ready":
                self.close()
                raise EngineError(f"vLLM replica {r} failed to start: {err}")

    def _scatter(self, method: str, requests: Sequence[Messages], *args, **kwargs) -> list:
        n = len(self.workers)
        shards = [list(range(r, len(requests), n)) for r in range(n)]
        for (_, conn), idx in zip(self.workers, shards, strict=True):
            conn.send((method, ([requests[i] for i in idx], *args), kwargs))
        out: list = [None] * len(requests)
        errors = []
        for r, ((_, conn), idx) in enumerate(zip(self.workers, shards, strict=True)):
            status, payload = conn.recv()
            if status != "ok":
                errors.append(f"replica {r}: {payload}")
                continue
            for i, value in zip(idx, payload, strict=True):
                out[i] = value
        if errors:
            raise EngineError("vLLM " + "; ".join(errors), partial=out)
        return out

    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        return self._scatter("generate", requests, sampling, desc=desc)

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        return self._scatter("choice_logprobs", requests, list(choices), assistant_prefix=assistant_prefix, desc=desc)

    def close(self) -> None:
        for proc, conn in self.workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        self.workers = []


def VLLMEngine(model_dir: str | Path, cfg: EngineConfig) -> Engine:  # noqa: N802 - a factory named like the class
    """One engine in this process, or replicas in worker processes when data_parallel_size > 1."""
    if cfg.vllm.data_parallel_size > 1:
        return ReplicatedVLLM(model_dir, cfg)
    return LocalVLLM(model_dir, cfg)

"""Multi-node generation: Ray Data shards the requests over vLLM replicas (`engine.backend: ray`).

For corpora too large for one machine's GPUs. Prompts are rendered and fitted to length here, by
the code training used (humpback.rendering), and go to Ray as text with Ray's own chat-template
stage off, so a pretrained model in our plain format is prompted as it was trained. Generation
only: choice_logprobs raises NotImplementedError, so scoring falls back to parsing generated text.
ray is imported lazily; it is the optional `ray` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from humpback.engines.base import Engine, Messages, Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.vllm_engine import engine_kwargs as vllm_engine_kwargs
from humpback.errors import ConfigError
from humpback.models import load_tokenizer, resolve
from humpback.rendering import encode, for_server


def _stage_flags(config_cls) -> dict:
    """Chat template off (the prompt arrives rendered), tokenizer on, in the spelling this Ray takes:
    `chat_template_stage` / `tokenize_stage` since 2.54 (the only one from 2.60), `apply_chat_template` /
    `tokenize` before; the config refuses unknown fields."""
    if "chat_template_stage" in getattr(config_cls, "model_fields", {}):
        return {"chat_template_stage": False, "tokenize_stage": True}
    return {"apply_chat_template": False, "tokenize": True}


class RayEngine(Engine):
    name = "ray"

    def __init__(self, model_dir: str | Path, cfg: EngineConfig):
        try:
            import ray
            import ray.data.llm as ray_llm
        except ImportError:
            raise ConfigError("engine.backend is 'ray' but ray[data] is not installed: pip install 'humpback[ray]'") from None
        self.cfg, self.ref = cfg, resolve(model_dir)
        if not ray.is_initialized():
            ray.init(address=cfg.ray.address or None)
        engine_kwargs = vllm_engine_kwargs(cfg, lora=bool(self.ref.adapter))
        extra: dict = {}
        self.adapter_name = None
        if self.ref.adapter:
            # Ray Data loads a LoRA adapter by name from a directory of adapters: a row whose
            # "model" differs from model_source names one.
            adapter = Path(self.ref.adapter).resolve()
            extra["dynamic_lora_loading_path"] = str(adapter.parent)
            self.adapter_name = adapter.name
        self.processor_config = ray_llm.vLLMEngineProcessorConfig(
            model_source=self.ref.base,
            engine_kwargs=engine_kwargs,
            concurrency=cfg.ray.num_replicas,
            batch_size=cfg.ray.batch_size,
            **_stage_flags(ray_llm.vLLMEngineProcessorConfig),
            **extra,
        )
        self.tok = load_tokenizer(self.ref)
        context = int(engine_kwargs.get("max_model_len") or getattr(self.tok, "model_max_length", 0) or 0)
        self.context = context if 0 < context < 10**7 else 0  # tokenizers without a limit report 1e30
        # build_processor in recent Ray, build_llm_processor before it
        self._build = getattr(ray_llm, "build_processor", None) or ray_llm.build_llm_processor
        self._ray = ray

    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        if not requests:
            return []
        sample = sampling.temperature > 0
        params = dict(
            temperature=sampling.temperature if sample else 0.0,
            top_p=sampling.top_p if sample else 1.0,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        adapter = self.adapter_name
        limits = [x for x in (self.cfg.max_input_tokens, self.context - sampling.max_new_tokens if self.context else 0)
                  if x > 0]
        budget = min(limits) if limits else 0
        prompts = [for_server(self.tok, self.tok.decode(encode(self.tok, m, max_tokens=budget))) for m in requests]

        def pre(row: dict) -> dict:
            out = dict(i=row["i"], prompt=row["prompt"], sampling_params=params)
            if adapter:
                out["model"] = adapter
            return out

        def post(row: dict) -> dict:
            return dict(i=row["i"], text=row["generated_text"])

        processor = self._build(self.processor_config, preprocess=pre, postprocess=post)
        ds = self._ray.data.from_items([{"i": i, "prompt": p} for i, p in enumerate(prompts)])
        rows = processor(ds).take_all()
        out = [""] * len(requests)
        for r in rows:
            out[int(r["i"])] = str(r["text"]).strip()
        return out

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        raise NotImplementedError("the ray backend generates text only; use backend vllm for log-probabilities")

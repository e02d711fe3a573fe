"""vLLM backend (GPU): the offline `LLM` with `SamplingParams`, LoRA adapters through `LoRARequest`.

Prompts are rendered with the model's chat template here (the same code the transformers backend
uses, length fitting included) and handed to vLLM as token ids, so both backends see identical
prompts. `tensor_parallel_size` shards one model over GPUs; `data_parallel_size` > 1 starts that
many replicas, each in its own process pinned to its own GPUs, and splits the requests among them.
vllm is imported lazily: it is the optional `gpu` extra.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing.connection import wait
from pathlib import Path

from humpback import ledger
from humpback.engines.base import Engine, EngineError, Messages, Sampling
from humpback.engines.config import VLLM_LORA_RANKS, EngineConfig
from humpback.engines.prompting import choice_plan, logsumexp
from humpback.errors import ConfigError, InputError
from humpback.hardware import gpu_summary
from humpback.models import ModelRef, load_tokenizer, resolve
from humpback.rendering import encode

log = logging.getLogger(__name__)

TOP_LOGPROBS = 20  # vLLM's default max_logprobs; the top-k fallback for a vLLM without logprob_token_ids


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


def adapter_rank(adapter_dir: str | Path) -> int:
    """The largest LoRA rank in a PEFT adapter: `r`, or a larger one a module gets from `rank_pattern`."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        cfg = json.loads(path.read_text())
        return max(int(r) for r in [cfg.get("r") or 0, *(cfg.get("rank_pattern") or {}).values()])
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise InputError(path, f"not a readable PEFT adapter config ({type(e).__name__}: {e})") from None


def check_adapter_rank(ref: ModelRef, cfg: EngineConfig) -> None:
    """vLLM refuses an adapter above max_lora_rank only when the first request loads it, after the
    model has loaded; say so before anything starts."""
    if not ref.adapter:
        return
    rank, limit = adapter_rank(ref.adapter), cfg.vllm.max_lora_rank
    if rank > limit:
        fits = next((r for r in VLLM_LORA_RANKS if r >= rank), None)
        fix = f"set it to {fits}" if fits else f"vLLM serves ranks up to {VLLM_LORA_RANKS[-1]}"
        raise ConfigError(f"engine.vllm.max_lora_rank: {limit} is below the rank {rank} of the LoRA adapter "
                          f"{ref.adapter}; {fix}")


def request_seed(seed: int, index: int) -> int:
    """The seed of request `index` in a call seeded `seed`: each request draws its own noise, the same
    on a rerun and whatever the number of replicas. 63 bits: vLLM keeps seeds in int64."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _takes_token_ids(sampling_params_cls) -> bool:
    """Whether this vLLM scores named token ids (`SamplingParams.logprob_token_ids`); SamplingParams is
    a msgspec Struct, whose fields are listed in `__struct_fields__`."""
    return "logprob_token_ids" in getattr(sampling_params_cls, "__struct_fields__", ())


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
        check_adapter_rank(self.ref, cfg)
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
        ledger.note_engine(self.name, gpu_summary(cfg.vllm.tensor_parallel_size))

    def _budget(self, reply_tokens: int) -> int:
        room = self.max_len - reply_tokens
        return min(self.cfg.max_input_tokens, room) if self.cfg.max_input_tokens > 0 else room

    def _run(self, prompts: list[list[int]], params, *, generated: bool = True):
        """vLLM's outputs for the prompts, counted in the ledger: a scoring call (`generated` False)
        samples one token only to read its log-probabilities, and counts none out."""
        if not prompts:
            return []
        outs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=True, lora_request=self.lora
        )
        ledger.add_tokens(sum(len(o.prompt_token_ids) for o in outs),
                          sum(len(o.outputs[0].token_ids) for o in outs) if generated else 0)
        ledger.add_examples(len(outs))
        return outs

    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        return self.generate_at(requests, sampling, range(len(requests)))

    def generate_at(self, requests: Sequence[Messages], sampling: Sampling, positions: Sequence[int]) -> list[str]:
        """`generate`, where request k is request `positions[k]` of the whole call: its seed follows its
        place in the call, so a replica's share samples as it would in one engine."""
        from vllm import SamplingParams

        if sampling.temperature > 0:
            # one seed per request: a shared one would give every request the same noise
            params = [
                SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                               max_tokens=sampling.max_new_tokens, seed=request_seed(sampling.seed, i))
                for i in positions
            ]
        else:
            params = SamplingParams(temperature=0.0, max_tokens=sampling.max_new_tokens)
        budget = self._budget(sampling.max_new_tokens)
        outs = self._run([encode(self.tok, m, max_tokens=budget) for m in requests], params)
        return [o.outputs[0].text.strip() for o in outs]

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        from vllm import SamplingParams

        prefix, token_ids = choice_plan(self.tok, assistant_prefix, choices)
        wanted = sorted({t for ids in token_ids.values() for t in ids})
        if not wanted:  # no choice is a single token of this tokenizer: nothing to ask the model
            return [dict.fromkeys(choices, -math.inf) for _ in requests]
        if _takes_token_ids(SamplingParams):
            # the exact log-probability of each choice token, however low it ranks
            params = SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=wanted)
        else:  # an older vLLM: only the top tokens, a choice outside them reads as -inf
            params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)
        budget = self._budget(1)
        outs = self._run([encode(self.tok, m, prefix, max_tokens=budget) for m in requests], params, generated=False)
        result = []
        for o in outs:
            # logprobs[0]: token id -> Logprob at step 0, for the requested (or top) tokens and the sampled one
            step = o.outputs[0].logprobs[0]
            result.append(
                {c: logsumexp([step[t].logprob for t in token_ids[c] if t in step]) if token_ids[c] else -math.inf
                 for c in choices}
            )
        return result

    def close(self) -> None:
        self.llm = None


# -- data-parallel replicas -------------------------------------------------------------------------


class _Terminated(BaseException):
    """SIGTERM in a replica, raised where it lands so the replica can still shut vLLM down."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def _replica(conn, gpus: str, model_dir: str, cfg: EngineConfig) -> None:
    """Worker process: own GPUs only, one LocalVLLM, answer (method, args, kwargs) until told to stop,
    until the parent is gone, or until terminated."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    code = 0
    try:
        _serve(conn, model_dir, cfg)
    except _Terminated:
        code = 128 + signal.SIGTERM
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends the process outright
    # Past the except clauses the frames that held the engine are gone. Collecting it now runs vLLM's
    # finalizers, which stop its engine core; multiprocessing's exit would otherwise wait on that process.
    gc.collect()
    if code:
        sys.exit(code)


def _serve(conn, model_dir: str, cfg: EngineConfig) -> None:
    try:
        engine = LocalVLLM(model_dir, cfg)
        conn.send(("ready", gpu_summary(cfg.vllm.tensor_parallel_size)))
    except Exception as e:  # reported to the parent, which raises it with context
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    try:
        while True:
            try:
                msg = conn.recv()
            except EOFError:  # the parent died without saying stop
                break
            if msg is None:
                break
            method, args, kwargs = msg
            try:
                # the answers with what they cost, counted by the parent's ledger
                reply = ("ok", ledger.counted(getattr(engine, method), *args, **kwargs))
            except Exception as e:
                reply = ("error", f"{type(e).__name__}: {e}")
            conn.send(reply)
    finally:
        engine.close()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    return f"exit code {code}" + (f", killed by signal {-code}" if code < 0 else "")


class ReplicatedVLLM(Engine):
    """`data_parallel_size` LocalVLLM processes; requests dealt round-robin, answers put back in order.

    A replica is not a daemon process: vLLM starts its engine core as a child process, which a daemon
    may not have. Replicas are stopped by close(), at interpreter exit, and on a failed start. Every
    wait watches the replica's process as well as its pipe, so a replica that dies (the OOM killer)
    is an EngineError naming it, never a hang, and the other replicas' answers are kept."""

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
        check_adapter_rank(resolve(model_dir), cfg)  # before any replica spends minutes loading the model
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(have)))).split(",")
        ctx = mp.get_context("spawn")  # CUDA cannot be forked
        self.workers: list = []
        self.dead: dict[int, str] = {}  # replica -> how it ended
        # Registered after multiprocessing's exit hook (imported with multiprocessing.connection), so it
        # runs first: that hook joins every non-daemon child, and a replica still listening never ends.
        atexit.register(self.close)
        try:
            for r in range(v.data_parallel_size):
                gpus = ",".join(visible[r * v.tensor_parallel_size : (r + 1) * v.tensor_parallel_size])
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_replica, args=(child, gpus, str(model_dir), cfg), name=f"vllm-replica-{r}")
                proc.start()
                child.close()  # the replica's end lives in the replica alone: its death closes the pipe
                self.workers.append((proc, parent))
            started = self._gather(range(len(self.workers)), first_failure=True)
            for r, (status, payload) in started.items():
                if status != "ready":
                    raise EngineError(f"vLLM replica {r} failed to start: {payload}")
            device = dict(started[0][1])  # each replica's own GPUs: all of them together
            ledger.note_engine(self.name, {**device, "count": device["count"] * v.data_parallel_size})
        except BaseException:
            self._stop(grace=5)  # the others may still be loading and would not hear a stop
            raise

    def _gather(self, replicas, *, first_failure: bool = False) -> dict[int, tuple[str, object]]:
        """The next message of each replica in `replicas`, in whatever order they come; a replica that
        exits without one gives ("died", how). With `first_failure`, returns at the first message that
        is not "ready"."""
        pending, closed = set(replicas), set()
        got: dict[int, tuple[str, object]] = {}
        while pending:
            handles: dict = {}
            for r in pending:
                proc, conn = self.workers[r]
                handles[proc.sentinel] = r
                if r not in closed:  # a closed pipe is always readable: watch the process alone
                    handles[conn] = r
            for handle in wait(list(handles)):
                r = handles[handle]
                if r not in pending:
                    continue
                proc, conn = self.workers[r]
                if r not in closed:
                    try:
                        if conn.poll():  # a reply sent just before exiting still counts
                            got[r] = conn.recv()
                            pending.discard(r)
                            continue
                    except (EOFError, OSError):
                        closed.add(r)  # the replica closed its end: it is exiting
                if proc.is_alive():
                    continue
                proc.join(timeout=5)
                self.dead[r] = _exit_text(proc.exitcode)
                got[r] = ("died", f"died ({self.dead[r]})")
                pending.discard(r)
            if first_failure and any(status != "ready" for status, _ in got.values()):
                break
        return got

    def _scatter(self, method: str, requests: Sequence[Messages], args: tuple = (), kwargs: dict | None = None,
                 *, positions: bool = False) -> list:
        """Deal the requests round-robin; with `positions`, each shard also gets its requests' places in
        the whole call."""
        n = len(self.workers)
        shards = [list(range(r, len(requests), n)) for r in range(n)]
        out: list = [None] * len(requests)
        errors, asked = [], []
        for r, ((_, conn), idx) in enumerate(zip(self.workers, shards, strict=True)):
            if r in self.dead:
                errors.append(f"replica {r}: died earlier ({self.dead[r]})")
                continue
            shard_args = ([requests[i] for i in idx], *args, *([idx] if positions else []))
            with contextlib.suppress(BrokenPipeError, OSError):  # a replica that is gone shows in _gather
                conn.send((method, shard_args, kwargs or {}))
            asked.append(r)
        for r, (status, payload) in sorted(self._gather(asked).items()):
            if status != "ok":
                errors.append(f"replica {r}: {payload}")
                continue
            payload, counts = payload
            ledger.add(counts)
            for i, value in zip(shards[r], payload, strict=True):
                out[i] = value
        if errors:
            raise EngineError("vLLM " + "; ".join(errors), partial=out)
        return out

    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        return self._scatter("generate_at", requests, (sampling,), positions=True)

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        return self._scatter("choice_logprobs", requests, (list(choices),),
                             dict(assistant_prefix=assistant_prefix, desc=desc))

    def _stop(self, grace: float) -> None:
        """Ask every replica to stop, wait up to `grace` seconds each, then terminate, then kill."""
        atexit.unregister(self.close)
        workers, self.workers = self.workers, []
        for _, conn in workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
        for proc, conn in workers:
            proc.join(timeout=grace)
            for end in (proc.terminate, proc.kill):
                if proc.is_alive():
                    end()
                    proc.join(timeout=10)
            conn.close()

    def close(self) -> None:
        self._stop(grace=60)


def VLLMEngine(model_dir: str | Path, cfg: EngineConfig) -> Engine:  # noqa: N802 - a factory named like the class
    """One engine in this process, or replicas in worker processes when data_parallel_size > 1."""
    if cfg.vllm.data_parallel_size > 1:
        return ReplicatedVLLM(model_dir, cfg)
    return LocalVLLM(model_dir, cfg)

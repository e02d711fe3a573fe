"""Multi-node generation and scoring: engine replicas as Ray actors (`engine.backend: ray`).

For corpora too large for one machine. The engine starts `engine.ray.num_replicas` actors, each
holding one engine, and keeps them until it is closed, so a stage that calls it once per chunk loads
each model once. A replica is the vllm backend's LocalVLLM on GPUs, or the transformers backend's
engine on `engine.ray.num_cpus` CPUs (`engine.ray.replica`; auto: vLLM where the replicas get GPUs,
transformers on CPUs). Both render and fit prompts the same way, apply LoRA adapters, seed each
request and read log-probabilities for scoring. Requests are dealt to idle replicas in batches of
`engine.ray.batch_size`; answers come back in request order, and a request samples with the seed
of its place in the call, however the batches fall.

Not Ray Data's LLM processor (`ray.data.llm`): its vLLM stage is an actor pool that lives for one
dataset execution and is released when that execution ends, so each chunk would load the model
again on every replica.

A real cluster needs, on every node: this project installed (with vllm for vLLM replicas:
`pip install 'humpback[ray]'`), and the working directory and the model directories on a file
system mounted at the same path (relative paths in model metadata are resolved there as they are
here; a LoRA adapter is loaded from its directory; a base named by hub id is downloaded on each
node). Hugging Face settings set here (HF_HOME, HF_HUB_OFFLINE, HF_TOKEN, ...) are passed to the
replicas through Ray's runtime_env; a token passed that way is visible to anyone who can read the
cluster's job and actor metadata. ray is imported lazily: the optional `ray` extra.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import socket
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from humpback import ledger
from humpback.engines.base import Engine, EngineError, Messages, Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.transformers_engine import TransformersEngine
from humpback.engines.vllm_engine import LocalVLLM, check_adapter_rank
from humpback.errors import ConfigError
from humpback.models import resolve

log = logging.getLogger(__name__)

# Hugging Face and transformers settings (cache location, offline mode, hub token, mirror) that a
# replica must share with this process to load the same files; node-specific settings stay out.
FORWARDED_ENV_PREFIXES = ("HF_", "HUGGING_FACE_", "HUGGINGFACE_", "TRANSFORMERS_")
# A lost node or a crashed engine: Ray restarts the actor (loading the model again) and resends its
# queued calls; an exception raised by the engine itself is not retried.
MAX_RESTARTS = 2
# Calls queued per replica, so it starts its next batch without waiting for the driver.
IN_FLIGHT_PER_REPLICA = 2
# Seconds close() gives the replicas to free their engines before killing them.
CLOSE_TIMEOUT = 30


def forwarded_env(environ=os.environ) -> dict[str, str]:
    """The variables of this process that the replicas get through runtime_env."""
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def replica_kind(cfg: EngineConfig, cluster_gpus: float) -> str:
    """What `engine.ray.replica: auto` runs: vLLM where the replicas get GPUs (engine.device cuda, or
    auto on a cluster with GPUs), the transformers backend on CPUs."""
    if cfg.ray.replica != "auto":
        return cfg.ray.replica
    if cfg.device.startswith("cuda"):
        return "vllm"
    return "transformers" if cfg.device == "cpu" or not cluster_gpus else "vllm"


def replica_plan(cfg: EngineConfig, kind: str) -> tuple[EngineConfig, float]:
    """The config a replica opens its engine with, and the GPUs Ray gives it."""
    if kind == "vllm":
        return cfg, cfg.vllm.tensor_parallel_size  # one vLLM engine's GPUs, on one node
    gpu = cfg.device.startswith("cuda")
    # Ray shows an actor only its own GPU (as cuda:0); on CPU, torch runs one thread per CPU reserved,
    # since more would contend with the replicas beside it on the node
    return dataclasses.replace(cfg, device="cuda" if gpu else "cpu", cpu_threads=cfg.ray.num_cpus), int(gpu)


def _replica_engine(kind: str):
    """The engine class a replica holds. Sent by name: each node imports it from its own installation."""
    return LocalVLLM if kind == "vllm" else TransformersEngine


def _one_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e  # a RayTaskError carries the replica's own exception
    return " ".join(f"{type(cause).__name__}: {cause}".split())


class Replica:
    """One engine in one Ray actor. A failure to start is kept and reported by `ready`, so the driver
    can say in one line which node could not load the model and why."""

    def __init__(self, engine_cls, model_dir: str, cfg: EngineConfig, cwd: str):
        self.engine, self.error, self.node = None, None, socket.gethostname()
        shared = "the ray backend needs it on a file system every node mounts at the same path"
        try:
            if not Path(cwd).is_dir():
                self.error = f"working directory {cwd} not found: {shared}"
            elif not Path(model_dir).is_dir():
                self.error = f"model directory {model_dir} not found: {shared}"
            else:
                os.chdir(cwd)  # relative bases in model metadata resolve as they do in the driver
                self.engine = engine_cls(model_dir, cfg)
        except Exception as e:
            self.error = _one_line(e)

    def ready(self) -> str | None:
        return f"on node {self.node}: {self.error}" if self.error else None

    def device(self) -> dict:
        """What this replica's engine runs on (as its engine noted it), else this process's device."""
        from humpback.hardware import device_summary

        return ledger.noted_device() or device_summary()

    def call(self, method: str, *args, **kwargs):
        """The engine's answers with what they cost: the driver counts them in its ledger."""
        if self.engine is None:  # a restarted actor whose engine failed to load again
            raise RuntimeError(f"no engine on node {self.node}: {self.error}")
        return ledger.counted(getattr(self.engine, method), *args, **kwargs)

    def close(self) -> None:
        """Free the engine, then end this actor (an intentional exit: Ray neither restarts it nor retries
        calls sent to it)."""
        import ray

        if self.engine is not None:
            engine, self.engine = self.engine, None
            engine.close()
            del engine
            gc.collect()  # runs vLLM's finalizers, which stop its engine-core process, before the actor exits
        ray.actor.exit_actor()


class RayEngine(Engine):
    name = "ray"

    def __init__(self, model_dir: str | Path, cfg: EngineConfig):
        try:
            import ray
        except ImportError:
            raise ConfigError("engine.backend is 'ray' but ray is not installed: pip install 'humpback[ray]'") from None
        self.cfg, self._ray, self.replicas = cfg, ray, []
        self.dead: set = set()  # replicas Ray gave up restarting: later calls skip them
        # a missing or malformed model directory, or an adapter above max_lora_rank, fails here, before any
        # replica spends minutes loading the model
        self.ref = resolve(model_dir)
        self.model_dir = str(Path(model_dir).absolute())  # the driver's cwd means nothing on another node
        if not ray.is_initialized():
            ray.init(address=cfg.ray.address or None)
        self.runtime_env = {"env_vars": forwarded_env()}
        have = ray.cluster_resources()
        self.kind = replica_kind(cfg, have.get("GPU", 0))
        if self.kind == "vllm":  # the transformers backend merges an adapter of any rank
            check_adapter_rank(self.ref, cfg)
        replica_cfg, gpus = replica_plan(cfg, self.kind)
        actor = ray.remote(Replica).options(
            num_gpus=gpus,
            num_cpus=cfg.ray.num_cpus,
            runtime_env=self.runtime_env,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_RESTARTS,
        )
        n = cfg.ray.num_replicas
        for resource, each in (("GPU", gpus), ("CPU", cfg.ray.num_cpus)):
            if each and have.get(resource, 0) < n * each:
                log.warning("engine.ray: %d %s replicas x %g %ss need %g %ss, the Ray cluster has %g: the "
                            "replicas wait until nodes with them join", n, self.kind, each, resource, n * each,
                            resource, have.get(resource, 0))
        log.info("engine.ray: %d %s replicas, %g CPUs and %g GPUs each", n, self.kind, cfg.ray.num_cpus, gpus)
        engine_cls, cwd = _replica_engine(self.kind), os.getcwd()
        self.replicas = [actor.remote(engine_cls, self.model_dir, replica_cfg, cwd) for _ in range(n)]
        try:
            errors = ray.get([r.ready.remote() for r in self.replicas])
        except ray.exceptions.RayError as e:
            self.close()
            raise EngineError(f"a Ray replica failed to start: {_one_line(e)}") from None
        failed = [(i, err) for i, err in enumerate(errors) if err]
        if failed:
            self.close()
            i, err = failed[0]
            raise EngineError(f"Ray replica {i} of {len(errors)} failed to start {err}")
        devices = ray.get([r.device.remote() for r in self.replicas])
        ledger.note_engine(self.name, {**devices[0], "count": sum(d["count"] for d in devices)})

    def _scatter(self, method: str, requests: Sequence[Messages], args: tuple, kwargs: dict, *, desc: str,
                 positions: bool = False) -> list:
        """Batches of requests to whichever replica is free, answers back in request order; with
        `positions`, each batch also gets its requests' places in the whole call. A failed batch does not
        stop the others: EngineError then keeps every answer that arrived."""
        ray = self._ray
        size = self.cfg.ray.batch_size
        todo = deque(range(start, min(start + size, len(requests))) for start in range(0, len(requests), size))
        free = [r for _ in range(IN_FLIGHT_PER_REPLICA) for r in self.replicas]
        pending: dict = {}
        out: list = [None] * len(requests)
        errors: list[str] = []
        with tqdm(total=len(requests), desc=desc, unit="prompt") as bar:
            while todo or pending:
                free = [r for r in free if r not in self.dead]
                while todo and free:
                    replica, batch = free.pop(0), todo.popleft()
                    where = (list(batch),) if positions else ()
                    ref = replica.call.remote(method, [requests[i] for i in batch], *args, *where, **kwargs)
                    pending[ref] = (replica, batch)
                if not pending:  # every replica is dead: what is left cannot run
                    errors = errors or ["every Ray replica has died"]
                    break
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                replica, batch = pending.pop(ref)
                try:
                    values, counts = ray.get(ref)
                except ray.exceptions.RayActorError as e:  # gone for good (restarts spent): never send it more
                    errors.append(_one_line(e))
                    self.dead.add(replica)
                    continue
                except ray.exceptions.RayError as e:  # the engine raised: the replica itself is fine
                    errors.append(_one_line(e))
                else:
                    ledger.add(counts)
                    for i, value in zip(batch, values, strict=True):
                        out[i] = value
                    bar.update(len(batch))
                free.append(replica)
        if errors:
            done = sum(v is not None for v in out)
            raise EngineError(f"Ray replicas answered {done} of {len(requests)} requests; {errors[0]}", partial=out)
        return out

    def generate(self, requests: Sequence[Messages], sampling: Sampling, *, desc: str = "generate") -> list[str]:
        if not requests:
            return []
        # each request's seed follows its place in the call: the same samples however it is batched
        return self._scatter("generate_at", list(requests), (sampling,), {}, desc=desc, positions=True)

    def choice_logprobs(
        self, requests: Sequence[Messages], choices: Sequence[str], *, assistant_prefix: str = "", desc: str = "score"
    ) -> list[dict[str, float]]:
        if not requests:
            return []
        return self._scatter("choice_logprobs", list(requests), (list(choices),),
                             {"assistant_prefix": assistant_prefix, "desc": desc}, desc=desc)

    def close(self) -> None:
        """Close each replica's engine, then stop the replicas: their GPUs and CPUs are free for the next
        engine a stage opens. A replica that does not answer in CLOSE_TIMEOUT seconds is killed as it is."""
        replicas, self.replicas = self.replicas, []
        # not retried: the actor's own exit is what ends the call
        closing = [r.close.options(max_task_retries=0).remote() for r in replicas if r not in self.dead]
        if closing:
            self._ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT)
        for replica in replicas:  # one that has exited is not affected
            self._ray.kill(replica)

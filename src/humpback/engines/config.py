"""The `engine` params section: which backend runs the models, and each backend's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from humpback.config import env_name_problem, param

# The LoRA ranks vLLM accepts for max_lora_rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class VLLMConfig:
    tensor_parallel_size: int = param(1, ge=1)  # GPUs per replica (one model sharded over them)
    data_parallel_size: int = param(1, ge=1)  # replicas, each in its own process on its own GPUs; requests are split
    gpu_memory_utilization: float = param(0.9, gt=0, le=1)
    max_model_len: int = param(0, ge=0)  # 0 = the model's own limit
    max_lora_rank: int = param(64, one_of=VLLM_LORA_RANKS)  # must be >= the rank of any adapter served
    enable_prefix_caching: bool = True  # scoring prompts share the long rubric prefix
    enforce_eager: bool = False  # skip CUDA graph capture (faster start, slower decode)


@dataclass
class OpenAIConfig:
    # An OpenAI-compatible endpoint (a vLLM server, a hosted model). The judge section may override it.
    base_url: str = ""  # e.g. http://localhost:8000/v1
    model: str = ""  # the served model name; empty = the model directory's name
    api_key_env: str = "OPENAI_API_KEY"  # env var holding the key; unset = no Authorization header
    timeout: float = param(120.0, gt=0)  # seconds per request
    max_retries: int = param(5, ge=0)  # the openai client's retries: timeouts, connection errors, 408, 409, 429, 5xx
    # first wait in seconds, doubled each retry up to 16x, less up to 25% jitter; a server's Retry-After up to
    # 120 s wins (a longer one fails at once)
    backoff: float = param(1.0, ge=0)
    concurrency: int = param(8, ge=1)  # requests in flight
    # How `assistant_prefix` reaches the model: continue = an assistant message plus vLLM's
    # continue_final_message; none = no prefix, read the first reply token; auto = continue, and
    # switch to none for good when the endpoint rejects the extra fields (HTTP 400/422).
    prefix_mode: Literal["auto", "continue", "none"] = "auto"
    # chat: /chat/completions, the server applies the model's chat template. completions:
    # /completions with the prompt rendered here (the local model directory's tokenizer, else our
    # plain format): for a served pretrained model that has no chat template.
    api: Literal["chat", "completions"] = "chat"

    def problems(self) -> list[tuple[str, str]]:
        return [("api_key_env", problem)] if (problem := env_name_problem(self.api_key_env)) else []


@dataclass
class RayConfig:
    # Multi-node generation and scoring: engines as Ray actors, kept for the engine's life
    # (`pip install 'humpback[ray]'`). Models and the working directory must be on a file system
    # every node mounts at the same path.
    address: str = ""  # ray.init address; empty = RAY_ADDRESS, else the cluster `ray start` began here, else a new local one
    num_replicas: int = param(1, ge=1)  # engines, each in its own actor
    # What each replica runs. vllm: one vLLM engine on engine.vllm.tensor_parallel_size GPUs of one node.
    # transformers: the transformers backend, on num_cpus CPUs (or one GPU with engine.device cuda).
    # auto: transformers when engine.device is cpu or the cluster has no GPUs, else vllm.
    replica: Literal["auto", "vllm", "transformers"] = "auto"
    # CPUs Ray reserves for each replica; a transformers replica on CPU runs this many torch threads
    num_cpus: int = param(1, ge=1)
    # requests a replica takes at a time: the engine batches within it, so larger is faster; smaller
    # balances uneven nodes and loses less when one fails
    batch_size: int = param(64, ge=1)


@dataclass
class EngineConfig:
    # auto = vLLM when CUDA and vllm are importable, else transformers.
    backend: Literal["auto", "transformers", "vllm", "openai", "ray"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: bf16 on CPUs with bf16 units and on GPUs
    device: str = "auto"  # transformers (and ray's transformers replicas): auto (cuda if present) | cpu | cuda | cuda:1
    batch_size: int = param(16, ge=1)  # transformers: prompts per forward batch
    # transformers on CPU: torch threads for this process; 0 = every core. OpenMP threads that
    # wait on each other collapse when other jobs share the cores (2 busy cores: 1 thread gave
    # 205 tokens/s, 2 threads 8), so set 1 on a shared machine.
    cpu_threads: int = param(0, ge=0)
    # Longest prompt in tokens, chat template included; 0 = the model's context minus the reply.
    # An over-long prompt loses the middle of its last user message (the task text at its start and
    # the request at its end both survive), so a long web segment is shortened, not the rubric.
    max_input_tokens: int = param(2048, ge=0)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def problems(self) -> list[tuple[str, str]]:
        """Settings that contradict the backend: caught before a stage loads a model."""
        out = []
        if self.backend == "vllm" and self.device == "cpu":
            out.append(("device", "cpu, but the vllm backend runs vLLM, which needs CUDA GPUs; "
                                  "use backend transformers on a CPU"))
        if self.backend == "ray" and self.device == "cpu" and self.ray.replica == "vllm":
            out.append(("device", "cpu, but engine.ray.replica is vllm, which needs CUDA GPUs; "
                                  "set it to transformers (or auto) for replicas on CPUs"))
        if self.backend == "ray" and self.vllm.data_parallel_size > 1:
            out.append(("vllm.data_parallel_size", f"{self.vllm.data_parallel_size} with backend ray, which "
                                                   "starts engine.ray.num_replicas replicas instead; set that"))
        if self.backend == "openai" and not self.openai.base_url:
            out.append(("openai.base_url", "empty, but backend openai sends every request to it"))
        return out

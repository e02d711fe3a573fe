"""What the machine offers: bf16 units on the CPU, how many threads torch should use, and what a
stage ran on (for its compute ledger)."""

from __future__ import annotations

import functools
import os
import sys


@functools.cache
def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16 make bf16 matmuls fast; elsewhere bf16 on CPU is emulated and slow."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def cpu_threads(configured: int) -> int:
    """0 = every core: DVC runs one stage at a time, and on an idle 2-core machine two threads
    make a LoRA step 1.6x faster (3.9 s vs 6.3 s). On cores shared with other work, OpenMP threads
    that spin on busy cores stall badly (there 1 thread was 3x faster than 2): set it to 1."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


def set_cpu_threads(configured: int) -> None:
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(configured))


@functools.cache
def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module says."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_summary(count: int | None = None) -> dict:
    """CPUs of this machine's model: `count` of them, by default the cores this process may run on."""
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"type": "cpu", "name": cpu_model(), "count": count}


def gpu_name() -> str | None:
    """The model of the first visible GPU, without starting CUDA in this process (a CUDA context
    takes GPU memory a vLLM engine beside it may have counted on): torch's answer where this process
    already uses CUDA, else NVML's (the nvidia-ml-py that vllm requires), else None."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return torch.cuda.get_device_name(0)
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
            handle = (pynvml.nvmlDeviceGetHandleByIndex(int(first)) if first.isdigit()
                      else pynvml.nvmlDeviceGetHandleByUUID(first))
            name = pynvml.nvmlDeviceGetName(handle)
            return name.decode() if isinstance(name, bytes) else name
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library or no driver: the ledger says cuda without a model name
        return None


def gpu_summary(count: int) -> dict:
    """`count` GPUs of the kind of the first one visible."""
    return {"type": "cuda", "name": gpu_name(), "count": count}


def device_summary() -> dict:
    """What this process computed on: CUDA when it used CUDA (one GPU, or one per process of a
    distributed run: WORLD_SIZE), else its CPUs. torch is asked only when the stage imported it, and
    never made to start CUDA: a stage that did not is a CPU stage."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return gpu_summary(int(os.environ.get("WORLD_SIZE") or 1))
    return cpu_summary()

"""What the machine offers: bf16 units on the CPU, and how many threads torch should use."""

from __future__ import annotations

import functools
import os


@functools.cache
def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16 make bf16 matmuls fast; elsewhere bf16 on CPU is emulated and slow."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def cpu_threads(configured: int) -> int:
    """0 = half the cores: OpenMP threads that spin on cores busy with other work stall badly
    (measured on 2 shared cores: 1 thread 16 s per LoRA step, 2 threads 53 s)."""
    return configured if configured > 0 else max(1, (os.cpu_count() or 2) // 2)


def set_cpu_threads(configured: int) -> None:
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(configured))

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
    """0 = every core: DVC runs one stage at a time, and on an idle 2-core machine two threads
    make a LoRA step 1.6x faster (3.9 s vs 6.3 s). On cores shared with other work, OpenMP threads
    that spin on busy cores stall badly (there 1 thread was 3x faster than 2): set it to 1."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


def set_cpu_threads(configured: int) -> None:
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(configured))

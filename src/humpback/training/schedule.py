"""Learning-rate schedule, batch arithmetic and data-scaling steps of the paper's recipe.

The paper's lr "1e-5 decaying linearly to 9e-6" ends at 0.9 of the peak: the floor is a ratio of
the peak, not an absolute multiplier of 9e-6 (a published re-implementation got this wrong).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, total_steps: int, warmup_steps: int, final_ratio: float) -> float:
    """Multiplier of the peak lr used at optimizer step `step` (0-based).

    Warmup reaches the peak at step `warmup_steps`; from there it falls linearly so that the last
    step (total_steps - 1) uses exactly final_ratio * peak, and stays there.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = total_steps - 1 - warmup_steps
    if decay_steps <= 0:
        return 1.0 if step < total_steps - 1 or total_steps <= 1 else final_ratio
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 1.0 - (1.0 - final_ratio) * progress


def linear_to_ratio(optimizer: Optimizer, total_steps: int, warmup_steps: int, final_ratio: float) -> LambdaLR:
    return LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, final_ratio))


@dataclass
class BatchPlan:
    effective: int  # examples per optimizer step, over all processes
    per_device: int
    accumulation: int
    world_size: int


def effective_batch(n_examples: int, batch_size: int, small_batch_size: int, small_threshold: int) -> int:
    """The paper: batch 32, but 8 when fine-tuning on fewer than 3,000 examples."""
    return small_batch_size if n_examples < small_threshold else batch_size


def plan_batches(effective: int, per_device_max: int, world_size: int = 1) -> BatchPlan:
    """Split the effective batch into micro-batches x accumulation x processes, exactly when possible."""
    per_process = max(1, effective // world_size)
    # the largest micro-batch <= per_device_max that divides the per-process share
    per_device = next(b for b in range(min(per_device_max, per_process), 0, -1) if per_process % b == 0)
    accumulation = math.ceil(per_process / per_device)
    return BatchPlan(per_device * accumulation * world_size, per_device, accumulation, world_size)


@dataclass(frozen=True)
class ScalingRow:
    n: int  # curated pairs
    batch_size: int
    max_steps: int


# The paper's data-scaling runs (Table 18): every N trains for these steps at this batch, so the
# curves compare data, not training length.
SCALING_STEPS: tuple[ScalingRow, ...] = (
    ScalingRow(100, 8, 30), ScalingRow(800, 8, 300), ScalingRow(1_600, 8, 600), ScalingRow(3_200, 32, 500),
    ScalingRow(6_400, 32, 600), ScalingRow(12_800, 32, 600), ScalingRow(25_600, 32, 1_200),
    ScalingRow(51_200, 32, 1_600),
)


def scaling_row(n: int) -> ScalingRow:
    """The Table 18 row for N curated pairs: the row of the largest tabulated N not above N, so an
    N between rows never trains longer than the paper trained a set of its size; under 100, the
    first row; over 51,200, the last."""
    if n <= 0:
        raise ValueError(f"N must be positive, got {n}")
    return max((r for r in SCALING_STEPS if r.n <= n), key=lambda r: r.n, default=SCALING_STEPS[0])

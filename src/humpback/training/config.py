"""`train:` params: one recipe for every fine-tuning run (backward, m0, it1, it2, ...); `backward:`,
the keys of that recipe the backward model trains with instead; and `mix:`, what the forward runs
(it1, it2, ...) learn from.

Defaults are the embedded CPU run (SmolLM2-135M, LoRA, bf16 autocast); configs/paper.yaml holds
the paper's full fine-tuning recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from humpback.config import param, seed_param


@dataclass
class LoraSettings:
    r: int = param(16, ge=1)
    alpha: int = param(32, gt=0)
    # 0: on CPU each dropout draws a random mask over every adapted layer's input; measured, LoRA
    # dropout 0.05 made a backward-model step 1.39x slower (bench/training.py)
    dropout: float = param(0.0, ge=0, lt=1)
    # peft's "all-linear" = every linear layer but the output head; or a list such as [q_proj, v_proj]
    target_modules: str | list[str] = "all-linear"

    def problems(self) -> list[tuple[str, str]]:
        names = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
        if not names or not all(n.strip() for n in names):
            return [("target_modules", "empty: name the modules (all-linear, or a list such as [q_proj, v_proj])")]
        return []


@dataclass
class TrainConfig:
    mode: Literal["lora", "full"] = "lora"  # lora saves only the adapter; full saves a whole checkpoint
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = param(2e-4, gt=0)  # peak lr (paper, full fine-tuning: 1e-5)
    # lr decays linearly from the peak to final_lr_ratio * peak at the last step. The paper's
    # "1e-5 decaying to 9e-6" is final_lr_ratio 0.9 (a ratio, not an absolute floor).
    final_lr_ratio: float = param(0.1, gt=0, le=1)
    warmup_ratio: float = param(0.05, ge=0, lt=1)  # share of the steps spent ramping up to the peak (paper: none stated)
    weight_decay: float = param(0.1, ge=0)
    # set on the model config where the architecture has it (Llama: attention_dropout). Paper: 0.1
    # (configs/paper.yaml). Default 0: on CPU attention dropout draws a mask over every attention
    # matrix and leaves SDPA's fused kernel; measured, 0.1 made an M0 step 1.9x slower.
    dropout: float = param(0.0, ge=0, lt=1)
    batch_size: int = param(32, ge=1)  # effective batch in examples (paper: 32) ...
    small_data_batch_size: int = param(8, ge=1)  # ... but this one when there are fewer than small_data_threshold examples
    small_data_threshold: int = param(3000, ge=0)
    per_device_batch_size: int = param(4, ge=1)  # micro-batch; gradient accumulation makes up the effective batch
    epochs: float = param(1.0, gt=0)
    max_steps: int = param(0, ge=0)  # > 0 overrides epochs
    max_seq_len: int = param(384, ge=8)  # longer examples are truncated (the longer side; see training.data)
    bf16: bool | Literal["auto"] = "auto"  # auto: on for bf16 GPUs and CPUs with AMX / AVX512-BF16 (autocast)
    gradient_checkpointing: bool = False
    # labelled: the output head and the loss at reply positions only (training.loss); all: the
    # model's own loss, logits at every position. Same loss and gradients; labelled is faster.
    loss_positions: Literal["labelled", "all"] = "labelled"
    group_by_length: bool = True  # batch examples of similar length (less padding, still seeded)
    max_grad_norm: float = param(1.0, gt=0)
    logging_steps: int = param(1, ge=1)  # steps between logged losses: the points of the training curves
    seed: int = seed_param(0)
    cpu_threads: int = param(0, ge=0)  # torch threads on CPU; 0 = every core (see humpback.hardware)


@dataclass
class MixConfig:
    """`mix:` params: what a forward model (train@<iteration>) learns from. Read by no other stage."""

    # true: the seed pairs (seed tag) + the curated pairs (augmented tag); false: the curated pairs
    # only, the paper's "w/o seed" ablation
    seed: bool = True
    # When the iteration's select.sample is N > 0, train with the batch size and steps the paper
    # used for N curated pairs (Table 18; see training.schedule.scaling_row) instead of
    # train.batch_size, small_data_batch_size and max_steps. N counts the curated pairs drawn;
    # the seed pairs come on top (mix.seed).
    scaling_steps: bool = True


@dataclass
class BackwardConfig:
    """`backward:` params: the backward model's own training (stage train_backward only).

    `train` is a partial mapping over the train section, checked as that section's keys are, as an
    iteration's `train:` override is. The default trains it for 2 epochs where the forward models
    take 1: it learns a short label (the instruction) per long document, so one pass over 141 seed
    pairs is only 2,349 labelled tokens, and the model it leaves still writes statements about the
    text where a request belongs (a third of its instructions were rejected by augment's filters;
    README "The backward model")."""

    train: dict[str, Any] = field(default_factory=lambda: {"epochs": 2})

"""`train:` params: one recipe for every fine-tuning run (backward, m0, it1, it2, ...).

Defaults are the embedded CPU run (SmolLM2-135M, LoRA, bf16 autocast); configs/paper.yaml holds
the paper's full fine-tuning recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # peft's "all-linear" = every linear layer but the output head; or a list such as [q_proj, v_proj]
    target_modules: str | list[str] = "all-linear"


@dataclass
class TrainConfig:
    mode: Literal["lora", "full"] = "lora"  # lora saves only the adapter; full saves a whole checkpoint
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 2e-4  # peak lr (paper, full fine-tuning: 1e-5)
    # lr decays linearly from the peak to final_lr_ratio * peak at the last step. The paper's
    # "1e-5 decaying to 9e-6" is final_lr_ratio 0.9 (a ratio, not an absolute floor).
    final_lr_ratio: float = 0.1
    warmup_ratio: float = 0.05  # share of the steps spent ramping up to the peak (paper: none stated)
    weight_decay: float = 0.1
    dropout: float = 0.1  # set on the model config where the architecture has it (Llama: attention_dropout)
    batch_size: int = 32  # effective batch in examples (paper: 32) ...
    small_data_batch_size: int = 8  # ... but this one when there are fewer than small_data_threshold examples
    small_data_threshold: int = 3000
    per_device_batch_size: int = 4  # micro-batch; gradient accumulation makes up the effective batch
    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    max_seq_len: int = 384  # longer examples are truncated (the longer side; see training.data)
    bf16: bool | Literal["auto"] = "auto"  # auto: on for bf16 GPUs and CPUs with AMX / AVX512-BF16 (autocast)
    gradient_checkpointing: bool = False
    group_by_length: bool = False  # batch examples of similar length (less padding, still seeded)
    max_grad_norm: float = 1.0
    logging_steps: int = 5
    seed: int = 0
    cpu_threads: int = 0  # torch threads on CPU; 0 = every core (see humpback.hardware)

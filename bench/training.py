"""Training throughput: LoRA + bf16 autocast vs fp32 full fine-tuning, one optimizer step at a time.

    python bench/training.py [--base models/base] [--steps 3] [--batch 8] [--seq 256]

Without --base (or if it does not exist) the embedded SmolLM2-135M is converted into a temporary
folder first. Prints a table and returns {setting: {"s_per_step", "tokens_per_s", ...}}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from humpback.models import BaseModelConfig, prepare_base, resolve
from humpback.training.config import TrainConfig
from humpback.training.trainer import _load_model, use_bf16

SETTINGS = {  # name -> (mode, bf16)
    "lora+bf16": ("lora", True),
    "lora+fp32": ("lora", False),
    "full+fp32": ("full", False),
    "full+bf16": ("full", True),
}


def bench_one(base: str, mode: str, bf16: bool, steps: int, batch: int, seq: int) -> dict:
    cfg = TrainConfig(mode=mode)
    torch.manual_seed(0)
    model, _, _ = _load_model(base, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=cfg.weight_decay)
    ids = torch.randint(0, 49152, (batch, seq))  # content does not matter for speed; SmolLM2 vocabulary
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels; not timed
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    s = sum(times[1:]) / steps
    return {"s_per_step": round(s, 2), "tokens_per_s": round(batch * seq / s, 1),
            "trainable_parameters": sum(p.numel() for p in params)}


def run(base: str | None = None, steps: int = 3, batch: int = 8, seq: int = 256,
        settings: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if base is None or not Path(base).exists():
            base = prepare_base(BaseModelConfig(), Path(tmp) / "base").base
        else:
            base = resolve(base).base
        names = settings or list(SETTINGS)
        results = {}
        for name in names:
            mode, bf16 = SETTINGS[name]
            if bf16 and not use_bf16("auto"):
                continue  # no fast bf16 on this machine: the comparison would mislead
            results[name] = bench_one(base, mode, bf16, steps, batch, seq)
    print(f"\ntraining step, batch {batch} x {seq} tokens, {torch.get_num_threads()} threads")
    print(f"{'setting':<12} {'s/step':>8} {'tokens/s':>10} {'trainable':>12}")
    for name, r in results.items():
        print(f"{name:<12} {r['s_per_step']:>8.2f} {r['tokens_per_s']:>10.1f} {r['trainable_parameters']:>12,}")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--settings", nargs="*", choices=list(SETTINGS))
    a = ap.parse_args()
    run(a.base, a.steps, a.batch, a.seq, a.settings)

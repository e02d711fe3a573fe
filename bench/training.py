"""Training throughput on the seed set's own examples: the default setup (LoRA, bf16 autocast, the
head and loss at labelled positions only) against the model's own loss (logits at every position)
and against fp32 full fine-tuning, for the backward model and the forward models; and what dropout
costs (the previous default's model 0.1 + LoRA 0.05; the paper's full fine-tuning with 0.1).

    python bench/training.py [--base models/base] [--steps 3] [--batch 4]

Each setting trains the same batches: the seed pairs as the backward model (shown the answer,
writes the instruction) or as M0 sees them, tokenized at train.max_seq_len and batched by length as
`group_by_length` does. tokens/s counts real tokens, not padding. Without --base (or if it does not
exist) the embedded SmolLM2-135M is converted into a temporary folder first.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.trainer_pt_utils import LengthGroupedSampler

from humpback.models import BaseModelConfig, load_tokenizer, prepare_base, resolve
from humpback.prompts import PromptsConfig
from humpback.training.config import TrainConfig
from humpback.training.data import Collator, build_examples, tokenize_all
from humpback.training.loss import LabelOnlyLoss
from humpback.training.trainer import frozen_linears_in, set_dropout, use_bf16, with_lora

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "data" / "seed" / "seed.jsonl"
# (model dropout, LoRA dropout) of the previous default and, for the model, of the paper's recipe
DROPOUT = (0.1, 0.05)
SETTINGS = {  # name -> (mode, bf16, loss positions, dropout); dropout None: the defaults (TrainConfig)
    "lora+bf16 labelled": ("lora", True, "labelled", None),
    "lora+bf16 all": ("lora", True, "all", None),
    "lora+fp32 all": ("lora", False, "all", None),
    "full+fp32 all": ("full", False, "all", None),
    "lora+bf16 labelled, dropout": ("lora", True, "labelled", DROPOUT),
    "full+fp32 all, dropout": ("full", False, "all", DROPOUT),
}


def seed_examples(base: str, kind: str, max_seq_len: int) -> tuple:
    """(tokenizer, the seed pairs as `kind` trains on them, tokenized at max_seq_len)."""
    seed = pl.read_ndjson(SEED).select("instruction", "output")
    tokenizer = load_tokenizer(resolve(base))
    tokenized, _ = tokenize_all(tokenizer, build_examples(kind, PromptsConfig(), seed), max_seq_len)
    return tokenizer, tokenized


def batches(tokenizer, tokenized: list, n: int, batch: int) -> list[dict]:
    """`n` micro-batches of `tokenized`, each of similar lengths, spread over the length range."""
    tokenized = sorted(tokenized, key=lambda t: len(t.input_ids))
    collate = Collator(tokenizer.pad_token_id)
    step = max(1, (len(tokenized) - batch) // max(1, n - 1))
    return [collate(tokenized[i * step: i * step + batch]) for i in range(n)]


def padding_share(lengths: list[int], micro: int, effective: int, seed: int = 0) -> dict:
    """The share of padded positions over one epoch of micro-batches, in the order the Trainer's
    length-grouped sampler draws them and in plain random order: what packing could save at most."""
    generator = torch.Generator().manual_seed(seed)
    orders = {"grouped": list(LengthGroupedSampler(effective, lengths=lengths, generator=generator)),
              "random": torch.randperm(len(lengths), generator=generator).tolist()}
    out = {}
    for name, order in orders.items():
        groups = [[lengths[j] for j in order[i:i + micro]] for i in range(0, len(order), micro)]
        out[name] = round(1 - sum(map(sum, groups)) / sum(max(g) * len(g) for g in groups), 3)
    return out


def bench_one(base: str, mode: str, bf16: bool, positions: str, dropout: tuple | None, data: list[dict]) -> dict:
    cfg = TrainConfig(mode=mode)
    if dropout is not None:
        cfg = replace(cfg, dropout=dropout[0], lora=replace(cfg.lora, dropout=dropout[1]))
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(base)
    set_dropout(config, cfg.dropout)  # as training sets it (Llama: attention dropout)
    model = AutoModelForCausalLM.from_pretrained(base, config=config, dtype=torch.float32)
    model.config.use_cache = False
    if mode == "lora":
        model = with_lora(model, cfg.lora)
        if bf16:
            frozen_linears_in(model, torch.bfloat16)  # as training does under bf16
    model.train()
    label_only = LabelOnlyLoss(model) if positions == "labelled" else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=cfg.weight_decay)
    times, tokens, loss_tokens = [], 0, 0
    for i, b in enumerate(data):  # the first step warms up allocators and kernels; not timed
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if label_only is not None:
                total, count = label_only.loss_sum(model, b["input_ids"], b["attention_mask"], b["labels"])
                loss = total / count
            else:
                loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
            tokens += int(b["attention_mask"].sum())
            loss_tokens += int((b["labels"] != -100).sum())
    seconds = sum(times)
    return {"s_per_step": round(seconds / len(times), 2), "tokens_per_s": round(tokens / seconds, 1),
            "labelled_share": round(loss_tokens / tokens, 3), "steps": len(times),
            "trainable_parameters": sum(p.numel() for p in params)}


def run(base: str | None = None, steps: int = 3, batch: int = 4, max_seq_len: int | None = None,
        settings: list[str] | None = None, kinds: tuple[str, ...] = ("backward", "m0")) -> dict:
    """{kind: {setting: {"s_per_step", "tokens_per_s", ...}}}; bf16 settings are skipped where the
    machine has no fast bf16 (the comparison would mislead)."""
    max_seq_len = max_seq_len or TrainConfig().max_seq_len
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if base is None or not Path(base).exists():
            base = prepare_base(BaseModelConfig(), Path(tmp) / "base").base
        else:
            base = resolve(base).base
        cfg = TrainConfig()
        results["padding"] = {}
        for kind in kinds:
            tokenizer, tokenized = seed_examples(base, kind, max_seq_len)
            results["padding"][kind] = padding_share([len(t.input_ids) for t in tokenized],
                                                     cfg.per_device_batch_size, cfg.small_data_batch_size)
            data = batches(tokenizer, tokenized, steps + 1, batch)
            results[kind] = {}
            # The first pass over new shapes builds oneDNN kernels (seconds each): measured, that
            # made whichever setting ran first 2x slower. One untimed LoRA run over the batches first.
            bench_one(base, *SETTINGS["lora+bf16 all" if use_bf16("auto") else "lora+fp32 all"], data)
            for name in settings or list(SETTINGS):
                mode, bf16, positions, dropout = SETTINGS[name]
                if bf16 and not use_bf16("auto"):
                    continue
                results[kind][name] = bench_one(base, mode, bf16, positions, dropout, data)
    print(f"\ntraining step, micro-batch {batch}, max_seq_len {max_seq_len}, {torch.get_num_threads()} threads")
    print(f"{'kind':<9} {'setting':<28} {'s/step':>7} {'tokens/s':>9} {'labelled':>9}")
    for kind in kinds:
        for name, r in results[kind].items():
            print(f"{kind:<9} {name:<28} {r['s_per_step']:>7.2f} {r['tokens_per_s']:>9.1f} {r['labelled_share']:>9.3f}")
    print("padded share of the positions, one epoch:", results["padding"])
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-seq-len", type=int)
    ap.add_argument("--settings", nargs="*", choices=list(SETTINGS))
    a = ap.parse_args()
    print(json.dumps(run(a.base, a.steps, a.batch, a.max_seq_len, a.settings), indent=1))

"""Generation throughput: our batched transformers backend vs one-prompt-at-a-time `model.generate`.

    python bench/generation.py [--base models/base] [--prompts 32] [--new-tokens 64] [--batch 16]

Without --base (or if it does not exist) the embedded SmolLM2-135M is converted into a temporary
folder first. Both sides decode greedily from the same loaded model and the same chat-templated
prompts; tokens/s counts the reply tokens each produced (up to EOS). Prints a table and returns
{setting: {"seconds", "tokens", "tokens_per_s", ...}}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from humpback.engines import cpu_attention
from humpback.engines.base import Sampling
from humpback.engines.config import EngineConfig
from humpback.engines.transformers_engine import TransformersEngine
from humpback.models import BaseModelConfig, prepare_base
from humpback.prompts import chat
from humpback.rendering import encode

TOPICS = ["whales", "bread", "the moon", "tea", "volcanoes", "chess", "rain", "bicycles"]
ASKS = ["Explain how {} work in simple terms.", "Give three facts about {}.",
        "Write a short poem about {}.", "What should a beginner know about {}?"]


def prompts(n: int, passage_words: int = 0) -> list:
    """n short requests; with passage_words, each opens with a passage of about that many words (as
    augment's prompts hold a whole segment), different for each request."""
    asks = [ASKS[i % len(ASKS)].format(TOPICS[i // len(ASKS) % len(TOPICS)]) for i in range(n)]
    if passage_words:  # two words ("<topic> <k>") per step
        asks = [" ".join(f"{TOPICS[(i * 7 + k) % len(TOPICS)]} {k}" for k in range(passage_words // 2)) + "\n\n" + ask
                for i, ask in enumerate(asks)]
    return [chat(a) for a in asks]


def _reply_tokens(engine: TransformersEngine, texts: list[str]) -> int:
    return sum(len(engine.tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)  # +1: the EOS


def naive(engine: TransformersEngine, reqs: list, new_tokens: int) -> list[str]:
    """What a first script does: one prompt at a time, no padding, no batching."""
    out = []
    with torch.inference_mode():
        for m in reqs:
            ids = torch.tensor([encode(engine.tok, m)], device=engine.model.device)
            seq = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                        do_sample=False, pad_token_id=engine.pad_id, eos_token_id=engine.eos_ids)
            out.append(engine.tok.decode(seq[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return out


def _timed(fn) -> tuple[float, list[str]]:
    start = time.perf_counter()
    texts = fn()
    return time.perf_counter() - start, texts


def run(base: str | None = None, n_prompts: int = 32, new_tokens: int = 64, batch: int = 16,
        attention: tuple[str, ...] = (cpu_attention.NAME, "sdpa", "eager"), dtype: str = "auto", threads: int = 0,
        naive_attention: tuple[str, ...] = ("sdpa",), passage_words: int = 0) -> dict:
    """`attention`: the implementations the engine runs with (on CPU the engine's own default is
    cpu_attention.NAME); `naive_attention`: those the one-prompt-at-a-time baseline runs with."""
    with tempfile.TemporaryDirectory() as tmp:
        if base is None or not Path(base).exists():
            base = str(prepare_base(BaseModelConfig(), Path(tmp) / "base").base)
        engine = TransformersEngine(base, EngineConfig(backend="transformers", dtype=dtype, batch_size=batch,
                                                  cpu_threads=threads))
        reqs = prompts(n_prompts, passage_words)
        greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=new_tokens, seed=0)
        engine.generate(reqs[:batch], Sampling(temperature=0.0, max_new_tokens=2), desc="warm-up")
        results: dict[str, dict] = {}
        reference = None
        for attn in attention:
            engine.model.set_attn_implementation(attn)
            settings = [(f"engine-b{batch}/{attn}", lambda: engine.generate(reqs, greedy, desc="bench"))]
            if attn in naive_attention:
                settings.insert(0, (f"naive/{attn}", lambda: naive(engine, reqs, new_tokens)))
            for name, fn in settings:
                seconds, texts = _timed(fn)
                reference = reference or texts
                tokens = _reply_tokens(engine, texts)
                results[name] = {"seconds": round(seconds, 1), "tokens": tokens,
                                 "tokens_per_s": round(tokens / seconds, 1),
                                 "same_text_as_first": round(sum(a == b for a, b in zip(texts, reference, strict=True)) / len(texts), 2)}
        for attn in attention:
            n, e = results.get(f"naive/{attn}"), results.get(f"engine-b{batch}/{attn}")
            if n and e:
                e["speedup_vs_naive"] = round(e["tokens_per_s"] / n["tokens_per_s"], 2)
        results["_setup"] = {"dtype": engine.dtype, "device": engine.device, "prompts": n_prompts,
                             "prompt_tokens": sum(len(encode(engine.tok, r)) for r in reqs),
                             "new_tokens": new_tokens, "threads": torch.get_num_threads()}
        engine.close()
    print(f"{'setting':<20} {'seconds':>8} {'tokens':>7} {'tok/s':>8} {'speedup':>8} {'same text':>9}")
    for name, r in results.items():
        if not name.startswith("_"):
            print(f"{name:<20} {r['seconds']:>8} {r['tokens']:>7} {r['tokens_per_s']:>8} "
                  f"{r.get('speedup_vs_naive', ''):>8} {r['same_text_as_first']:>9}")
    print(results["_setup"])
    return results


def workload_parser(doc: str) -> argparse.ArgumentParser:
    """The options every generation bench shares: the model, the prompts, their length, the batch."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--base", default=None)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dtype", default="auto")
    return p


def main() -> None:
    p = workload_parser(__doc__)
    p.add_argument("--attention", default=f"{cpu_attention.NAME},sdpa,eager",
                   help="comma-separated attention implementations")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = the engine default (every core)")
    p.add_argument("--passage-words", type=int, default=0, help="open each prompt with a passage this long")
    a = p.parse_args()
    run(a.base, a.prompts, a.new_tokens, a.batch, tuple(a.attention.split(",")), a.dtype, a.threads,
        passage_words=a.passage_words)


if __name__ == "__main__":
    main()

"""The ray backend on CPUs: transformers replicas as Ray actors vs the in-process transformers backend.

    python bench/ray_cpu.py [--base models/base] [--prompts 32] [--new-tokens 64] [--batch 16] [--replicas 2]

Both sides get the same cores: the in-process engine runs `replicas` torch threads (and, for
reference, one), the ray backend `replicas` replicas of one CPU and one thread each, on a local Ray
instance of `replicas` CPUs (unless one is already running). Both decode greedily the same chat-templated prompts, in batches of `batch`
(a replica takes `batch` requests at a time); tokens/s counts the reply tokens each produced (up to
EOS). Without --base (or if it does not exist) the embedded SmolLM2-135M is converted into a
temporary folder first. Returns {"transformers": {...}, "transformers_1_thread": {...}, "ray": {...},
"ratio": ray / transformers, "ratio_1_thread": ray / transformers on one thread, "_setup": {...}}.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from generation import _reply_tokens, prompts, workload_parser  # a sibling bench script: bench/ is on sys.path

from humpback.engines.base import Sampling
from humpback.engines.config import EngineConfig, RayConfig
from humpback.engines.ray_engine import RayEngine
from humpback.engines.transformers_engine import TransformersEngine
from humpback.models import BaseModelConfig, prepare_base


def _timed_generate(engine, reqs: list, sampling: Sampling, tok_engine) -> tuple[dict, list[str]]:
    # a first call pays for allocations and thread start-up on every replica: two batches each
    engine.generate(reqs, Sampling(temperature=0.0, max_new_tokens=2), desc="warm-up")
    start = time.perf_counter()
    texts = engine.generate(reqs, sampling, desc="bench")
    seconds = time.perf_counter() - start
    tokens = _reply_tokens(tok_engine, texts)
    return {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}, texts


def run(base: str | None = None, n_prompts: int = 32, new_tokens: int = 64, batch: int = 16, replicas: int = 2,
        dtype: str = "auto") -> dict:
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        if base is None or not Path(base).exists():
            base = str(prepare_base(BaseModelConfig(), Path(tmp) / "base").base)
        reqs = prompts(n_prompts)
        greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=new_tokens, seed=0)
        results: dict = {}
        # the baseline: one process on the same cores; and, for reference, on one thread, which is
        # faster than several where other work shares the cores (see engine.cpu_threads)
        for name, threads in (("transformers", replicas), ("transformers_1_thread", 1)):
            local = TransformersEngine(base, EngineConfig(backend="transformers", device="cpu", dtype=dtype,
                                                          batch_size=batch, cpu_threads=threads))
            results[name], texts = _timed_generate(local, reqs, greedy, local)
            results[name]["threads"] = threads
            if name == "transformers":
                reference = texts
            local.model = None  # keep the tokenizer to count the replicas' tokens

        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=replicas, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            start = time.perf_counter()
            engine = RayEngine(base, EngineConfig(backend="ray", device="cpu", dtype=dtype, batch_size=batch,
                                                  ray=RayConfig(num_replicas=replicas, num_cpus=1, batch_size=batch)))
            start_seconds = round(time.perf_counter() - start, 1)
            try:
                results["ray"], texts = _timed_generate(engine, reqs, greedy, local)
            finally:
                engine.close()
        finally:
            if started:
                ray.shutdown()
        results["ray"].update(replicas=replicas, threads_each=1, start_seconds=start_seconds,
                              same_text=round(sum(a == b for a, b in zip(texts, reference, strict=True)) / len(texts), 2))
        results["ratio"] = round(results["ray"]["tokens_per_s"] / results["transformers"]["tokens_per_s"], 2)
        results["ratio_1_thread"] = round(results["ray"]["tokens_per_s"] / results["transformers_1_thread"]["tokens_per_s"], 2)
        results["_setup"] = {"dtype": local.dtype, "prompts": n_prompts, "new_tokens": new_tokens, "batch": batch,
                             "replicas": replicas, "load_average": [round(x, 2) for x in os.getloadavg()]}
    print(f"{'setting':<34} {'seconds':>8} {'tokens':>7} {'tok/s':>8}")
    for name, label in (("transformers", f"transformers, {replicas} threads"),
                        ("transformers_1_thread", "transformers, 1 thread"),
                        ("ray", f"ray, {replicas} replicas x 1 thread")):
        r = results[name]
        print(f"{label:<34} {r['seconds']:>8} {r['tokens']:>7} {r['tokens_per_s']:>8}")
    print(f"ratio {results['ratio']} ({results['ratio_1_thread']} vs 1 thread), same text as the baseline "
          f"{results['ray']['same_text']}, replicas started in {results['ray']['start_seconds']} s; {results['_setup']}")
    return results


def main() -> None:
    p = workload_parser(__doc__)
    p.add_argument("--replicas", type=int, default=2)
    a = p.parse_args()
    run(a.base, a.prompts, a.new_tokens, a.batch, a.replicas, a.dtype)


if __name__ == "__main__":
    main()

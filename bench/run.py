"""Run the benchmarks, each figure beside a baseline measured in the same run, and check the targets.

    python bench/run.py [--only corpus generation scoring training pipeline vllm ray] [--quick] [--out metrics/bench.json]
    python bench/run.py --render metrics/bench.json    # the table again, plus Markdown for the README

Writes metrics/bench.json (the machine, every row, each bench's raw results or its error) and
prints a table. A bench that fails records its error and the others still run. --quick shrinks
every workload to a smoke test: its numbers show that the benches work, not how fast anything is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))  # the sibling bench scripts, when run as `python bench/run.py`


@dataclass
class Row:
    bench: str
    measure: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_label: str = ""  # what the baseline is
    ratio: float | None = None  # value / baseline (or the reverse where lower is better; see target)
    target: str = ""
    holds: bool | None = None  # None: informational or not measured here
    note: str = ""


@dataclass
class Context:
    quick: bool
    threads: int
    base: str | None = None  # a prepared base model directory, shared by the model benches
    scratch: str | None = None  # where model() converted it; removed at the end

    def model(self) -> str:
        if self.base is None:
            from humpback.models import BaseModelConfig, prepare_base

            self.scratch = tempfile.mkdtemp(prefix="bench-base-")
            self.base = str(prepare_base(BaseModelConfig(), Path(self.scratch) / "base").base)
        return self.base


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


# -- the benches ------------------------------------------------------------------------------------


def bench_corpus(ctx: Context) -> tuple[list[Row], dict]:
    import corpus

    sizes = (2_000, 8_000) if ctx.quick else (200_000, 1_000_000)
    res = corpus.run(sizes)
    small, large = res[str(sizes[0])], res[str(sizes[1])]
    per_core = large["segments_per_cpu_second"]
    rss_ratio = res["_summary"]["rss_ratio"]
    seg_ratio = res["_summary"]["segments_ratio"]
    per_segment = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 1024 / (large["segments_in"] - small["segments_in"])
    rows = [
        Row("corpus", f"segments/s per core, {large['segments_in']:,} segments", per_core, "seg/cpu-s",
            small["segments_per_cpu_second"], f"{small['segments_in']:,} segments",
            _ratio(per_core, small["segments_per_cpu_second"]), ">= 2,000 seg/s per core", per_core >= 2000,
            f"wall {large['segments_per_second']:,} seg/s"),
        Row("corpus", f"peak RSS, {large['segments_in']:,} segments", large["peak_rss_mb"], "MB",
            small["peak_rss_mb"], f"{small['segments_in']:,} segments", rss_ratio,
            f"<= 1,500 MB; flat: <= 1.5x for {seg_ratio:g}x the segments",
            large["peak_rss_mb"] <= 1500 and rss_ratio <= 1.5,
            f"{per_segment:.2f} KB more per extra segment (dedup indexes)"),
    ]
    return rows, res


def bench_generation(ctx: Context) -> tuple[list[Row], dict]:
    import generation

    from humpback.engines import cpu_attention

    n, new, batch = (4, 8, 4) if ctx.quick else (32, 64, 16)
    both = (cpu_attention.NAME, "sdpa")
    res = generation.run(ctx.model(), n_prompts=n, new_tokens=new, batch=batch, attention=both,
                         naive_attention=both, threads=ctx.threads)
    eng, naive = res[f"engine-b{batch}/{cpu_attention.NAME}"], res["naive/sdpa"]
    own = res[f"naive/{cpu_attention.NAME}"]
    ratio = _ratio(eng["tokens_per_s"], naive["tokens_per_s"])
    setup = f"{n} prompts x {new} new tokens, greedy, {res['_setup']['dtype']}"
    return [Row("generation", f"transformers backend, batch {batch}", eng["tokens_per_s"], "tok/s",
                naive["tokens_per_s"], "one prompt at a time", ratio, ">= 3x", ratio is not None and ratio >= 3, setup),
            Row("generation", "one prompt at a time, decoding steps masked", own["tokens_per_s"], "tok/s",
                naive["tokens_per_s"], "transformers' SDPA call (no mask)", _ratio(own["tokens_per_s"], naive["tokens_per_s"]),
                note=f"{setup}; an unpadded batch decodes as this one (engines/cpu_attention.py)")], res


def bench_scoring(ctx: Context) -> tuple[list[Row], dict]:
    import scoring

    pairs, new = (2, 16) if ctx.quick else (16, 256)
    res = scoring.run(ctx.model(), n_pairs=pairs, max_new_tokens=new, threads=ctx.threads)
    lp, gen, agree = res["logprob"], res["generate"], res["agreement"]
    rows = [
        Row("scoring", "logprob mode", lp["pairs_per_s"], "pairs/s", gen["pairs_per_s"],
            f"generate mode ({new} new tokens)", res["speedup"], ">= 10x", res["speedup"] >= 10,
            f"{lp['pairs']} pairs: {pairs} seed + {pairs} corrupted"),
        Row("scoring", "agreement: Spearman logprob vs generate", agree["spearman"], "rho",
            note=f"Pearson {agree['pearson']}; {agree['n_compared']} pairs with a parsed score"),
        Row("scoring", "generate mode parse failures", agree["parse_failure_rate"], "share"),
        Row("scoring", "AUC good vs corrupted, logprob", lp["auc_good_vs_corrupted"], "AUC",
            gen["auc_good_vs_corrupted"], "generate mode",
            note="0.5 = chance" + ("" if gen["auc_good_vs_corrupted"] is not None else
                                   "; generate mode: too few parsed scores for an AUC")),
    ]
    return rows, res


def bench_training(ctx: Context) -> tuple[list[Row], dict]:
    import training

    steps, batch, seq = (1, 2, 64) if ctx.quick else (3, 4, None)
    res = training.run(ctx.model(), steps=steps, batch=batch, max_seq_len=seq)
    note = f"{steps} steps of {batch} seed examples each, AdamW"
    rows = []
    for kind, label in (("backward", "backward model"), ("m0", "forward model (M0)")):
        got = res[kind]
        full = got["full+fp32 all"]["tokens_per_s"]
        if "lora+bf16 labelled" not in got:
            rows.append(Row("training", f"{label}: default setup", None, target=">= 3x", note="no fast bf16 on this machine"))
            continue
        default, every = got["lora+bf16 labelled"]["tokens_per_s"], got["lora+bf16 all"]["tokens_per_s"]
        share = got["lora+bf16 labelled"]["labelled_share"]
        ratio = _ratio(default, every)
        target = ">= 2x" if kind == "backward" else ""  # a reply is most of a forward example: less to skip
        rows.append(Row("training", f"{label}: logits at labelled positions only", default, "tok/s", every,
                        "logits at every position (LoRA + bf16)", ratio, target,
                        (ratio is not None and ratio >= 2) if target else None,
                        f"{note}; {share:.0%} of the positions labelled"))
        ratio = _ratio(default, full)
        rows.append(Row("training", f"{label}: default setup (LoRA + bf16, labelled logits)", default, "tok/s", full,
                        "full fine-tuning, fp32, every position", ratio, ">= 3x", ratio is not None and ratio >= 3, note))
        dropped = got["lora+bf16 labelled, dropout"]["tokens_per_s"]
        rows.append(Row("training", f"{label}: no dropout (the default)", default, "tok/s", dropped,
                        "model dropout 0.1 + LoRA dropout 0.05", _ratio(default, dropped), note=note))
        paper = got["full+fp32 all, dropout"]["tokens_per_s"]
        rows.append(Row("training", f"{label}: default setup vs the paper's", default, "tok/s", paper,
                        "full fine-tuning, fp32, every position, dropout 0.1", _ratio(default, paper), note=note))
    pad = res["padding"]
    rows.append(Row("training", "padded positions, length-grouped micro-batches", pad["backward"]["grouped"], "share",
                    pad["backward"]["random"], "random order", None, "", None,
                    f"backward model, one epoch; M0: {pad['m0']['grouped']} vs {pad['m0']['random']}: "
                    "what packing could save at most"))
    return rows, res


def bench_pipeline(ctx: Context) -> tuple[list[Row], dict]:
    import pipeline

    res = pipeline.run()
    full, noop, thr = res["full"], res["noop"], res["threshold"]
    rows = [
        Row("pipeline", "no-op dvc repro", noop["seconds"], "s", full["seconds"], "full tiny DAG",
            _ratio(noop["seconds"], full["seconds"]), "<= 10 s", noop["seconds"] <= 10,
            f"{noop['stages_run']} stages run"),
        Row("pipeline", "select.threshold change", thr["seconds"], "s", full["seconds"], "full tiny DAG",
            _ratio(thr["seconds"], full["seconds"]), "score@it1 not re-run", thr["score_it1_reused"],
            f"{thr['stages_run']} of {full['stages_run']} stages re-run"),
        Row("pipeline", "full tiny DAG", full["seconds"], "s", note=f"{full['stages_run']} stages, tiny preset"),
    ]
    return rows, res


def bench_vllm(ctx: Context) -> tuple[list[Row], dict]:
    """vLLM vs our transformers backend on one GPU, same prompts, greedy."""
    from humpback.engines.loader import cuda_available, vllm_available

    if not (cuda_available() and vllm_available()):
        why = "no GPU" if not cuda_available() else "vllm not installed"
        return [Row("vllm", "vLLM vs transformers on a GPU", None, "tok/s", target=">= 10x", note=f"skipped: {why}")], \
            {"skipped": why}
    import generation

    from humpback.engines.base import Sampling
    from humpback.engines.config import EngineConfig
    from humpback.engines.transformers_engine import TransformersEngine
    from humpback.engines.vllm_engine import VLLMEngine

    n, new = (16, 32) if ctx.quick else (512, 128)
    reqs = generation.prompts(n)
    greedy = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=new, seed=0)
    res = {}
    for name, make in (("transformers", lambda: TransformersEngine(ctx.model(), EngineConfig(
                            backend="transformers", device="cuda", batch_size=64))),
                       ("vllm", lambda: VLLMEngine(ctx.model(), EngineConfig(backend="vllm")))):
        engine = make()
        engine.generate(reqs[:8], Sampling(temperature=0.0, max_new_tokens=4), desc="warm-up")
        start = time.perf_counter()
        texts = engine.generate(reqs, greedy, desc="bench")
        seconds = time.perf_counter() - start
        tokens = generation._reply_tokens(engine, texts)
        res[name] = {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}
        engine.close()
    ratio = _ratio(res["vllm"]["tokens_per_s"], res["transformers"]["tokens_per_s"])
    return [Row("vllm", "vLLM", res["vllm"]["tokens_per_s"], "tok/s", res["transformers"]["tokens_per_s"],
                "transformers backend, batch 64", ratio, ">= 10x", ratio is not None and ratio >= 10,
                f"{n} prompts x {new} new tokens")], res


def bench_ray(ctx: Context) -> tuple[list[Row], dict]:
    """The ray backend's CPU replicas vs the in-process transformers backend, on the same cores."""
    import ray_cpu

    n, new, batch = (8, 8, 4) if ctx.quick else (32, 64, 16)
    res = ray_cpu.run(ctx.model(), n_prompts=n, new_tokens=new, batch=batch, replicas=2)
    r, local, one = res["ray"], res["transformers"], res["transformers_1_thread"]
    ratio = _ratio(r["tokens_per_s"], local["tokens_per_s"])
    return [
        Row("ray", "ray backend, 2 CPU replicas x 1 thread", r["tokens_per_s"], "tok/s", local["tokens_per_s"],
            "transformers backend, 2 threads", ratio, ">= 0.8x", ratio is not None and ratio >= 0.8,
            f"{n} prompts x {new} new tokens, greedy, {res['_setup']['dtype']}; replicas started in "
            f"{r['start_seconds']} s; same text as the baseline {r['same_text']}"),
        Row("ray", "ray backend vs one thread", r["tokens_per_s"], "tok/s", one["tokens_per_s"],
            "transformers backend, 1 thread", _ratio(r["tokens_per_s"], one["tokens_per_s"]),
            note="one thread is the fast setting where other work shares the cores"),
    ], res


BENCHES: dict[str, Callable[[Context], tuple[list[Row], dict]]] = {
    "corpus": bench_corpus,
    "generation": bench_generation,
    "scoring": bench_scoring,
    "training": bench_training,
    "pipeline": bench_pipeline,
    "vllm": bench_vllm,
    "ray": bench_ray,
}


# -- the run ----------------------------------------------------------------------------------------


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = round(kb / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram, "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def run_benches(names: list[str], ctx: Context) -> dict:
    """Run the named benches; a failure becomes an error row and the next bench runs."""
    import torch

    from humpback.hardware import cpu_threads

    rows: list[Row] = []
    report: dict = {"machine": machine(), "quick": ctx.quick, "threads": cpu_threads(ctx.threads), "benches": {}}
    for name in names:
        torch.set_num_threads(cpu_threads(ctx.threads))  # an engine may have changed it for the whole process
        start, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        try:
            bench_rows, raw = BENCHES[name](ctx)
            status = {"ok": True, "results": raw}
        except Exception as e:  # recorded; the other benches still run
            bench_rows = [Row(name, "error", None, note=f"{type(e).__name__}: {e}"[:300])]
            status = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
        status["load_average_before"] = round(load, 2)  # other work on the machine slows wall-clock figures
        status["seconds"] = round(time.perf_counter() - start, 1)
        status["cpu_seconds_this_process"] = round(time.process_time() - cpu, 1)
        report["benches"][name] = status
        rows.extend(bench_rows)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["rows"] = [asdict(r) for r in rows]
    return report


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 10 else f"{x:,.0f}" if abs(x) >= 1000 else f"{x:,.1f}"
    return str(x)


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = report["machine"]
    title = (f"humpback benchmarks{' (quick)' if report['quick'] else ''}: {m['cpu']}, {m['cores']} cores, "
             f"{m['ram_gib']} GiB, torch {m['torch']}, {report['threads']} torch threads"
             + (f", {m['gpu']}" if m["gpu"] else ", no GPU"))
    table = Table(title=title, title_justify="left")
    for col in ("bench", "measure", "value", "baseline", "ratio", "target", "holds", "note"):
        table.add_column(col, justify="right" if col in ("value", "ratio") else "left")
    for r in report["rows"]:
        value = f"{_fmt(r['value'])} {r['unit']}".strip() if r["value"] is not None else "-"
        baseline = f"{_fmt(r['baseline'])} ({r['baseline_label']})" if r["baseline"] is not None else ""
        holds = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[r["holds"]]
        table.add_row(r["bench"], r["measure"], value, baseline, _fmt(r["ratio"]), r["target"], holds, r["note"])
    Console(width=200).print(table)


def merge(old: dict, new: dict) -> dict:
    """`old` with the benches of `new` replaced (or added), rows in bench order."""
    benches = {**old["benches"], **new["benches"]}
    order = [n for n in BENCHES if n in benches] + [n for n in benches if n not in BENCHES]
    rows = [r for r in old["rows"] if r["bench"] not in new["benches"]] + new["rows"]
    rows.sort(key=lambda r: order.index(r["bench"]) if r["bench"] in order else len(order))
    machine = {**new["machine"], "load_average_at_start": old["machine"]["load_average_at_start"]}
    return {**new, "machine": machine, "benches": {n: benches[n] for n in order}, "rows": rows,
            "merged": sorted(new["benches"])}


def markdown(report: dict) -> str:
    """The table as Markdown, for the README."""
    m = report["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['gpu'] or 'no GPU'}, "
             f"torch {m['torch']}, {report['threads']} torch thread(s); load average {m['load_average_at_start']} "
             f"at the start, {m.get('load_average_at_end')} at the end.", "",
             "| bench | measure | value | baseline | ratio | target | holds | note |",
             "|---|---|--:|---|--:|---|---|---|"]
    for r in report["rows"]:
        value = f"{_fmt(r['value'])} {r['unit']}".strip() if r["value"] is not None else "-"
        baseline = f"{_fmt(r['baseline'])} ({r['baseline_label']})" if r["baseline"] is not None else ""
        holds = {True: "yes", False: "**no**", None: ""}[r["holds"]]
        cells = [r["bench"], r["measure"], value, baseline, _fmt(r["ratio"]), r["target"], holds, r["note"]]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    ap.add_argument("--quick", action="store_true", help="tiny workloads: check that the benches run")
    ap.add_argument("--base", help="a prepared base model directory (default: convert the embedded model once)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = the engine default (every core)")
    ap.add_argument("--out", default=str(ROOT / "metrics" / "bench.json"))
    ap.add_argument("--merge", action="store_true",
                    help="replace only the benches run now in an existing --out file; keep the others")
    ap.add_argument("--render", metavar="JSON", help="print the table of an earlier run (and its Markdown); run nothing")
    a = ap.parse_args(argv)
    if a.render:
        report = json.loads(Path(a.render).read_text())
        print_table(report)
        print(markdown(report))
        return report

    from humpback.io import write_json

    ctx = Context(quick=a.quick, threads=a.threads, base=a.base if a.base and Path(a.base).exists() else None)
    try:
        report = run_benches(a.only, ctx)
    finally:
        if ctx.scratch:
            shutil.rmtree(ctx.scratch, ignore_errors=True)
    if a.merge and Path(a.out).exists():
        report = merge(json.loads(Path(a.out).read_text()), report)
    write_json(report, a.out)
    print_table(report)
    return report


if __name__ == "__main__":
    main()

"""The paper's experiments as DVC experiments: one `dvc exp run -S ...` per variant, and one table.

    humpback ablations run --preset configs/tiny.yaml --scaling 2,4   # every variant, then the table
    humpback ablations run --only baseline,without_seed --queue      # queue them; `dvc queue start`
    humpback ablations table                                          # the table from `dvc exp show`

A variant is a list of `-S` overrides over the params (the preset's keys come first, as `++key=value`,
so the committed params.yaml is never edited). Each runs as its own experiment (`--temp`: a copy of
the workspace sharing the DVC cache and run-cache, so the stages a variant does not touch are
restored, not re-run). The table (metrics/ablations.md and .json) has the headline numbers of each
variant (metrics/headline): the last iteration's win rate [95% interval] and length-controlled win rate, M0's, and
the curated pairs kept per iteration.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from humpback.config import IterationsConfig, default_section, load_section, read_params
from humpback.errors import ConfigError, HumpbackError
from humpback.evaluation.scaling import exp_revs, get_path
from humpback.io import write_json, write_text

PREFIX = "abl"
HEADLINE = "metrics/headline"  # the declared DVC metrics: one short file per model


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]  # `dvc exp run -S` arguments
    paper: str  # the experiment of the paper it reproduces


def last_iteration(iterations: dict) -> str:
    """The iteration no other iteration scores from: the end of the chain (it2 by default)."""
    prevs = {it.prev if hasattr(it, "prev") else it["prev"] for it in iterations.values()}
    ends = [name for name in iterations if name not in prevs]
    if len(ends) != 1:
        raise ConfigError(f"iterations: expected one last iteration, found {ends or 'none'}")
    return ends[0]


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def variants(params: str | Path = "params.yaml", scaling: tuple[int, ...] = ()) -> list[Variant]:
    """The grid: each of the paper's comparisons, written against the params they change."""
    prompts = load_section("prompts", params) if Path(params).is_file() else default_section("prompts")
    iterations = load_section("iterations", params) if Path(params).is_file() else IterationsConfig.DEFAULT
    last = last_iteration(iterations)
    seed, web = prompts.seed_tag, prompts.augmented_tag
    out = [
        Variant("baseline", (), "Humpback as configured (curated data + seed, both tags at inference)"),
        Variant("no_curation", ("select.curate=false",), "no self-curation: every candidate (A, not A_k)"),
        Variant("without_seed", ("mix.seed=false",), "curated data without the seed set (w/o seed)"),
        Variant("k5", ("select.threshold=5", "select.top_share=0"), "A_5: pairs rated 5"),
        Variant("k4.5", ("select.threshold=4.5", "select.top_share=0"), "A_4.5: pairs rated >= 4.5"),
        Variant(f"k5_{last}_4.5", ("select.threshold=5", "select.top_share=0", f"++iterations.{last}.select.threshold=4.5"),
                f"A_5 at iteration 1, >= 4.5 at {last} (the paper's final recipe)"),
        Variant("no_tags", (f"prompts.seed_tag={_quote('')}", f"prompts.augmented_tag={_quote('')}",
                            f"prompts.inference_system={_quote('')}"), "no system prompt in training or inference"),
        Variant("inference_seed_tag", (f"prompts.inference_system={_quote(seed)}",), "inference with the seed tag"),
        Variant("inference_web_tag", (f"prompts.inference_system={_quote(web)}",), "inference with the web tag"),
        Variant("inference_no_tag", (f"prompts.inference_system={_quote('')}",), "inference without a system prompt"),
    ]
    out += [Variant(f"scale_{n}", (f"++iterations.{last}.select.sample={n}",),
                    f"data scaling: a random {n} of {last}'s curated pairs, the paper's steps for N")
            for n in scaling]
    return out


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    leaves = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves += _flatten(value, path + ".")
        else:
            leaves.append((path, value))
    return leaves


def _value(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return "[" + ",".join(_value(v, where) for v in value) + "]"
    raise ConfigError(f"{where}: a list of mappings cannot be passed as `-S`; apply that preset to params.yaml first")


def preset_overrides(preset: str | Path) -> tuple[str, ...]:
    """A preset file as `-S` arguments (`++` adds a key params.yaml lacks, or sets it)."""
    tree = read_params(preset)
    return tuple(f"++{k}={_value(v, f'{preset}: {k}')}" for k, v in _flatten(tree))


def command(v: Variant) -> str:
    """The variant as a user types it, over the params as they are."""
    def arg(o: str) -> str:
        if "'" in o and not any(c in o for c in '"$`\\!'):
            return f'"{o}"'  # reads better than shlex's '"'"' for the quoted strings -S needs
        return shlex.quote(o)

    return " ".join(["dvc exp run", *(f"-S {arg(o)}" for o in v.overrides)])


def exp_name(variant: str) -> str:
    # DVC experiment names are git ref names: no dots
    return f"{PREFIX}-" + re.sub(r"[^A-Za-z0-9_-]", "_", variant)


def run(grid: list[Variant], base: tuple[str, ...] = (), *, queue: bool = False) -> list[dict]:
    """Run (or queue) every variant as a DVC experiment; returns what happened to each."""
    log = []
    for v in grid:
        name = exp_name(v.name)
        subprocess.run(["dvc", "exp", "remove", name], capture_output=True)  # a rerun replaces it
        cmd = ["dvc", "exp", "run", "--queue" if queue else "--temp", "-n", name]
        for override in (*base, *v.overrides):
            cmd += ["-S", override]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = round(time.perf_counter() - start, 1)
        status = "queued" if queue and proc.returncode == 0 else "done" if proc.returncode == 0 else "failed"
        ran = sorted(set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr)))
        log.append({"variant": v.name, "experiment": name, "status": status, "seconds": seconds,
                    "stages_run": len(ran), "command": command(v),
                    **({"error": (proc.stdout + proc.stderr)[-2000:]} if status == "failed" else {})})
        print(f"{v.name}: {status} in {seconds:.0f} s ({len(ran)} stages run)", flush=True)
    return log


def _metric(metrics: dict, file: str, key: str):
    return get_path((metrics.get(file) or {}).get("data") or {}, key)


def table(exp_show: list, grid: list[Variant], last: str) -> list[dict]:
    """One row per variant that has an experiment: its headline metrics."""
    by_name = {}
    for rev in exp_revs(exp_show):
        if rev.get("name") and rev.get("rev") != "workspace":
            by_name[rev["name"]] = (rev.get("data") or {}).get("metrics") or {}
    rows = []
    for v in grid:
        metrics = by_name.get(exp_name(v.name))
        if metrics is None:
            continue
        # the headline files (src/humpback/evaluation/headline.py): the DVC metrics of every run
        final = f"{HEADLINE}/{last}.json"
        rows.append({
            "variant": v.name, "paper": v.paper, "overrides": list(v.overrides),
            "win_rate": _metric(metrics, final, "win"), "ci_low": _metric(metrics, final, "lo"),
            "ci_high": _metric(metrics, final, "hi"),
            "lc_win_rate": _metric(metrics, final, "lc"),  # the joint length-controlled fit of the variant's run
            "m0_win_rate": _metric(metrics, f"{HEADLINE}/m0.json", "win"),
            "kept": {k.rsplit("/", 1)[-1].removesuffix(".json"): (m.get("data") or {}).get("kept")
                     for k, m in sorted(metrics.items())
                     if k.startswith(f"{HEADLINE}/") and "kept" in (m.get("data") or {})},
        })
    return rows


def _fmt(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(rows: list[dict], last: str) -> str:
    lines = [f"| variant | {last} win rate [95% interval] | LC win rate | M0 win rate | kept per iteration | overrides |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        kept = ", ".join(f"{k} {v}" for k, v in r["kept"].items())
        overrides = " ".join(f"`-S {o}`" for o in r["overrides"]) or "(none)"
        lines.append(f"| {r['variant']} | {_fmt(r['win_rate'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
                     f"{_fmt(r['lc_win_rate'])} | {_fmt(r['m0_win_rate'])} | {kept} | {overrides} |")
    return "\n".join(lines) + "\n"


def collect(grid: list[Variant], last: str, out: Path, log: list[dict] | None = None) -> list[dict]:
    proc = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise HumpbackError(f"dvc exp show failed: {proc.stderr.strip()[-500:]}")
    rows = table(json.loads(proc.stdout), grid, last)
    if log:
        timing = {e["variant"]: e for e in log}
        for r in rows:
            r["seconds"] = timing.get(r["variant"], {}).get("seconds")
    write_json({"last_iteration": last, "rows": rows, "runs": log or []}, out.with_suffix(".json"))
    write_text(markdown(rows, last), out.with_suffix(".md"))
    return rows

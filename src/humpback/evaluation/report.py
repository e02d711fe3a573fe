"""The report: DVC plot data under metrics/plots/, one PNG and one HTML page under metrics/report/,
and beside them the candidate browser (candidates.html, humpback.evaluation.candidates_page) where
the augment and score tables are given.

Every input belongs to a configured model (eval.models) or iteration (`iterations`): a missing one
is an error, since the report would otherwise silently show less than the pipeline ran. Beside
the per-model files, metrics/eval holds the judge's own check (judge_check.json), the consecutive
comparisons (paired.json) and the length-controlled fit (length_controlled.json); the report reads
each where it exists and says so where it does not. A judge that failed its check gets a warning
line above the win rates: they are then not evidence of anything.
"""

from __future__ import annotations

import html
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from humpback.config import inside
from humpback.errors import InputError
from humpback.evaluation.candidates_page import PAGE, CandidatePaths, build_candidates_page
from humpback.evaluation.curation_quality import load_labels, read_kept, selection_quality
from humpback.io import atomic_path, write_json, write_text
from humpback.readers import read_json, read_table

BINS = ["1", "2", "3", "4", "5", "unparsed"]


@dataclass
class ReportPaths:
    """Every path the report reads or writes; dvc.yaml passes each one to the stage."""

    eval_metrics: Path  # <model>.json
    curation_metrics: Path  # <iteration>.json
    seed: Path
    curated: Path  # <iteration>.parquet
    plots: Path
    report: Path
    curation_quality: Path
    # the candidate browser's inputs (all three or none): data/augmented/candidates.parquet,
    # data/augmented/rejected.parquet and the directory of <iteration>.parquet scores
    candidates: Path | None = None
    rejected: Path | None = None
    scored: Path | None = None


JUDGE_CHECK = "judge_check.json"
PAIRED = "paired.json"
LENGTH_CONTROLLED = "length_controlled.json"
BACKWARD = "backward"  # heldout_backward@<model>'s <model>.json: the base and the backward model


@dataclass
class ReportData:
    win_rates: list[dict] = field(default_factory=list)
    judge_check: dict | None = None  # metrics/eval/judge_check.json; None = not run
    paired: list[dict] = field(default_factory=list)  # one row per comparison of paired.json
    heldout: list[dict] = field(default_factory=list)  # models with a held-out NLL
    backward: list[dict] = field(default_factory=list)  # held-out instructions under base and backward
    openings: dict = field(default_factory=dict)  # how varied augment's kept instructions open; {}: no candidates
    histograms: dict[str, dict[str, int]] = field(default_factory=dict)
    kept: list[dict] = field(default_factory=list)
    lengths: list[dict] = field(default_factory=list)
    quality: dict = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    data = read_json(path, "file not found (its stage has not run)")
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    return data


def _optional_json(path: Path) -> dict | None:
    return _read_json(path) if path.is_file() else None


def _number(path: Path, value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, f"{what}: expected a number, got {value!r:.40}")
    return float(value)


def lc_win_rates(directory: Path) -> dict[str, float | None]:
    """models.<name>.lc_win_rate of length_controlled.json (the joint fit); {} where it has not run."""
    path = directory / LENGTH_CONTROLLED
    data = _optional_json(path)
    if data is None:
        return {}
    models = data.get("models")
    if not isinstance(models, dict):
        raise InputError(path, "expected key 'models' (model -> {lc_win_rate, ...})")
    return {m: _number(path, v.get("lc_win_rate") if isinstance(v, dict) else v, f"models.{m}.lc_win_rate")
            for m, v in models.items()}


def win_rate_rows(models: list[str], directory: Path) -> list[dict]:
    lc = lc_win_rates(directory)
    rows = []
    for m in models:
        path = directory / f"{m}.json"
        data = _read_json(path)
        if "win_rate" not in data:
            raise InputError(path, "no 'win_rate' key")
        rows.append({"model": m, **{k: data.get(k) for k in (
            "win_rate", "standard_error", "discrete_win_rate")}, "lc_win_rate": lc.get(m),
            **{k: data.get(k) for k in ("avg_length", "n_total", "reference", "judge")},
            "heldout_nll": _number(path, data.get("heldout_nll"), "heldout_nll")})
    return rows


def backward_rows(directory: Path) -> list[dict]:
    """The held-out instructions' NLL given their answers, under the base and the backward model
    (metrics/eval/backward/<model>.json); a model whose file is absent is left out."""
    rows = []
    for m in ("base", "backward"):
        path = directory / BACKWARD / f"{m}.json"
        data = _optional_json(path)
        if data is not None:
            rows.append({"model": m, "heldout_nll": _number(path, data.get("heldout_nll"), "heldout_nll"),
                         "heldout_tokens": data.get("heldout_tokens"), "heldout_n": data.get("heldout_n")})
    return rows


OPENING_WORDS = 3


def instruction_openings(candidates: Path, top: int = 5) -> dict:
    """How varied the backward model's instructions are: among the candidates augment kept, the
    distinct openings (first OPENING_WORDS words) and the most common ones. A backward model trained
    past its data repeats a few requests ("Write a Python function ...") whatever the text shows."""
    df = read_table(candidates, ["instruction"], allow_empty=True,
                    missing="file not found (has augment run?)")
    counts = Counter(" ".join(str(text).split()[:OPENING_WORDS]) for text in df["instruction"])
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"instructions": df.height, "distinct_openings": len(counts),
            "top": [{"opening": o, "count": n} for o, n in common]}


def judge_check_data(directory: Path) -> dict | None:
    path = directory / JUDGE_CHECK
    data = _optional_json(path)
    if data is not None and not isinstance(data.get("trustworthy"), bool):
        raise InputError(path, "expected key 'trustworthy' (true or false)")
    return data


def paired_rows(models: list[str], directory: Path) -> list[dict]:
    """The comparisons of paired.json whose two models are both configured, in eval.models order."""
    path = directory / PAIRED
    data = _optional_json(path)
    if data is None:
        return []
    comparisons = data.get("comparisons")
    if not isinstance(comparisons, dict):
        raise InputError(path, "expected key 'comparisons' (name -> {a, b, win_rate, ci_low, ci_high, ...})")
    rows = []
    for name, c in comparisons.items():
        if not isinstance(c, dict) or not {"a", "b", "win_rate", "ci_low", "ci_high"} <= set(c):
            raise InputError(path, f"comparisons.{name}: expected keys a, b, win_rate, ci_low, ci_high")
        if c["a"] in models and c["b"] in models:
            rows.append({"comparison": name, "a": c["a"], "b": c["b"],
                         **{k: _number(path, c[k], f"comparisons.{name}.{k}") for k in ("win_rate", "ci_low", "ci_high")},
                         "n": c.get("n"), "excludes_50": c.get("excludes_50")})
    return sorted(rows, key=lambda r: models.index(r["a"]))


def judge_warning(check: dict | None) -> str | None:
    """The line shown above the win rates when they cannot be trusted; None when the judge passed."""
    if check is None:
        return "The judge was not checked (no judge_check.json): treat the win rates with care."
    if check["trustworthy"]:
        return None
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    t = check.get("thresholds") or {}
    return (f"Warning: the judge failed its check, so these win rates are not trustworthy: it preferred the intact "
            f"answer in {fmt(check.get('discrimination'))} of {check.get('n')} pairs (needs "
            f"{fmt(t.get('discrimination'))}) and kept its verdict when the order was swapped in "
            f"{fmt(check.get('order_consistency'))} (needs {fmt(t.get('order_consistency'))}).")


def curation_rows(iterations: list[str], directory: Path) -> tuple[dict[str, dict[str, int]], list[dict]]:
    hists, kept = {}, []
    for it in iterations:
        path = directory / f"{it}.json"
        data = _read_json(path)
        hist = data.get("histogram")
        if not isinstance(hist, dict) or "kept" not in data:
            raise InputError(path, "expected keys 'histogram' (score -> count) and 'kept'")
        hists[it] = {b: int(hist.get(b, 0)) for b in BINS}
        kept.append({"iteration": it, "kept": int(data["kept"]), "threshold": data.get("threshold"),
                     "candidates": sum(hists[it].values())})
    return hists, kept


def length_row(name: str, df: pl.DataFrame) -> dict:
    row: dict = {"dataset": name, "n": df.height}
    for col in ("instruction", "output"):
        chars = df[col].cast(pl.String).str.len_chars().cast(pl.Float64) if df.height else pl.Series([], dtype=pl.Float64)
        row[f"{col}_mean"] = round(float(chars.mean()), 1) if df.height else None
        row[f"{col}_median"] = round(float(chars.median()), 1) if df.height else None
        row[f"{col}_p90"] = round(float(chars.quantile(0.9)), 1) if df.height else None
    return row


def length_rows(seed: Path, curated: Path, iterations: list[str]) -> list[dict]:
    rows = [length_row("seed", read_table(seed, columns=["instruction", "output"]))]
    for it in iterations:
        df = read_kept(curated / f"{it}.parquet", "instruction")
        if "output" not in df.columns:
            raise InputError(curated / f"{it}.parquet", "missing column 'output'")
        rows.append(length_row(f"augmented {it}", df))
    return rows


def collect(models: list[str], iterations: list[str], paths: ReportPaths, *, labels: str = "",
            id_column: str = "segment_id", label_threshold: float = 5) -> ReportData:
    data = ReportData(win_rates=win_rate_rows(models, paths.eval_metrics))
    data.judge_check = judge_check_data(paths.eval_metrics)
    data.paired = paired_rows(models, paths.eval_metrics)
    data.heldout = [{"model": r["model"], "heldout_nll": r["heldout_nll"]} for r in data.win_rates
                    if r["heldout_nll"] is not None]
    data.backward = backward_rows(paths.eval_metrics)
    data.openings = instruction_openings(paths.candidates) if paths.candidates is not None else {}
    data.histograms, data.kept = curation_rows(iterations, paths.curation_metrics)
    data.lengths = length_rows(paths.seed, paths.curated, iterations)
    if labels:
        truth = load_labels(labels, id_column=id_column, threshold=label_threshold)
        data.quality = {"labels": labels, "iterations": {
            it: selection_quality(paths.curated / f"{it}.parquet", truth, id_column=id_column) for it in iterations}}
    else:
        data.quality = {"labels": None, "iterations": {}}
    return data


def write_plot_data(data: ReportData, directory: Path) -> None:
    """Flat JSON lists, one file per plot; curation histograms one file per iteration (a DVC plots dir)."""
    write_json(data.win_rates, directory / "win_rate.json")
    write_json(data.kept, directory / "kept.json")
    write_json(data.lengths, directory / "lengths.json")
    write_json(data.paired, directory / "paired.json")
    write_json(data.heldout, directory / "heldout_nll.json")
    for it, hist in data.histograms.items():
        # an iteration name from params becomes a file name: it stays inside the plots directory
        write_json([{"score": b, "count": n} for b, n in hist.items()], inside(directory, "curation", f"{it}.json"))


def render_png(data: ReportData, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(3, 2, figsize=(12, 12.5))
    warning = judge_warning(data.judge_check)
    if warning:
        fig.suptitle("\n".join(textwrap.wrap(warning, 140)), color="darkred", fontsize=9)
    ax = axes[0, 0]
    models = [r["model"] for r in data.win_rates]
    x = np.arange(len(models))
    wr = [r["win_rate"] for r in data.win_rates]
    se = [r["standard_error"] or 0 for r in data.win_rates]
    lc = [r["lc_win_rate"] if r["lc_win_rate"] is not None else np.nan for r in data.win_rates]
    ax.bar(x - 0.2, wr, 0.4, yerr=se, capsize=3, label="win rate (± s.e.)", color="tab:blue")
    ax.bar(x + 0.2, lc, 0.4, label="length-controlled", color="tab:orange")
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, models)
    ax.set_ylim(0, 100)
    ref = data.win_rates[0]["reference"] if data.win_rates else ""
    ax.set_title(f"Win rate vs {ref}")
    ax.set_ylabel("%")
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[0, 1]
    its = list(data.histograms)
    width = 0.8 / max(1, len(its))
    bx = np.arange(len(BINS))
    for k, it in enumerate(its):
        ax.bar(bx + (k - (len(its) - 1) / 2) * width, [data.histograms[it][b] for b in BINS], width, label=it)
    ax.set_xticks(bx, BINS)
    ax.set_title("Curation scores per iteration")
    ax.set_xlabel("score")
    ax.set_ylabel("pairs")
    if its:
        ax.legend(fontsize=8)

    ax = axes[1, 0]
    kx = np.arange(len(data.kept))
    ax.bar(kx, [r["candidates"] for r in data.kept], 0.6, color="lightgrey", label="scored")
    ax.bar(kx, [r["kept"] for r in data.kept], 0.6, color="tab:green", label="kept")
    for i, r in enumerate(data.kept):
        ax.annotate(f"{r['kept']} (≥ {r['threshold']})", (i, r["kept"]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(kx, [r["iteration"] for r in data.kept])
    ax.set_title("Curated data kept per iteration")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    names = [r["dataset"] for r in data.lengths]
    lx = np.arange(len(names))
    ax.bar(lx - 0.2, [r["instruction_mean"] or 0 for r in data.lengths], 0.4, label="instruction")
    ax.bar(lx + 0.2, [r["output_mean"] or 0 for r in data.lengths], 0.4, label="output")
    ax.set_xticks(lx, names)
    ax.set_title("Mean length, seed vs augmented (chars)")
    ax.set_ylabel("characters")
    ax.legend(fontsize=8)

    ax = axes[2, 0]
    px = np.arange(len(data.paired))
    for i, r in enumerate(data.paired):
        ax.errorbar(i, r["win_rate"], yerr=[[r["win_rate"] - r["ci_low"]], [r["ci_high"] - r["win_rate"]]],
                    fmt="o", capsize=4, color="tab:green" if r["excludes_50"] else "tab:grey")
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_xticks(px, [f"{r['a']} vs {r['b']}" for r in data.paired])
    ax.set_xlim(-0.5, max(1, len(data.paired)) - 0.5)
    ax.set_ylim(0, 100)
    ax.set_title("Consecutive models head to head (95% paired bootstrap)" if data.paired
                 else "Consecutive models head to head: none")
    ax.set_ylabel("win rate of the later model, %")

    ax = axes[2, 1]
    if data.heldout:
        ax.plot([r["model"] for r in data.heldout], [r["heldout_nll"] for r in data.heldout], "o-", color="tab:purple")
    ax.set_title("Held-out seed answers: NLL per token" if data.heldout else "Held-out NLL: not measured")
    ax.set_ylabel("nats per token (lower is better)")

    fig.tight_layout(rect=(0, 0, 1, 0.97) if warning else (0, 0, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(rows[0])
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _check_row(stats: dict) -> dict:
    return {k: stats.get(k) for k in ("discrimination", "order_consistency", "first_slot_rate", "n")}


def _openings_html(openings: dict) -> str:
    if not openings:
        return ""
    return (f"<p>Its instructions that augment kept: {openings['instructions']}, with "
            f"{openings['distinct_openings']} distinct {OPENING_WORDS}-word openings; the most common:</p>"
            + _table(openings["top"]))


def render_html(data: ReportData, path: Path, png_name: str, candidates_page: str | None = None) -> None:
    quality = [{"iteration": it, **q} for it, q in data.quality.get("iterations", {}).items()]
    warning = judge_warning(data.judge_check)
    warning_html = f'<p class="warning">{html.escape(warning)}</p>' if warning else ""
    check = data.judge_check
    check_html = "<p>not run</p>" if check is None else _table(
        [{"degradation": "all", **_check_row(check)}]
        + [{"degradation": k, **_check_row(v)} for k, v in (check.get("by_degradation") or {}).items()])
    browse_html = (f'<p><a href="{html.escape(candidates_page)}">Browse the candidate pairs</a>: each generated '
                   "instruction with its segment, scores and select's verdict, filterable and sortable.</p>"
                   if candidates_page else "")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>humpback report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}
.warning{{color:#8b0000;font-weight:bold}}</style></head>
<body><h1>humpback evaluation report</h1>
{warning_html}
{browse_html}
<img src="{html.escape(png_name)}" alt="win rates, curation scores, kept data, lengths, paired comparisons, held-out NLL" style="max-width:100%">
<h2>Win rates</h2>{_table(data.win_rates)}
<h2>Judge check</h2>{check_html}
<h2>Consecutive models head to head</h2>{_table(data.paired) if data.paired else "<p>no comparisons (one model, or the paired stage has not run)</p>"}
<p>Win rate of a over b on the same prompts, both orders, with a 95% paired bootstrap interval over prompts; a claim that a beat b holds only where the interval excludes 50.</p>
<h2>Backward model: held-out instructions</h2>{_table(data.backward) if data.backward else "<p>not measured (stage heldout_backward)</p>"}
<p>Mean NLL per token of the held-out seed instructions given their answers, under the base model and the backward model trained from it: how well each writes the request a human text answers.</p>
{_openings_html(data.openings)}
<h2>Curation per iteration</h2>{_table([{**r, **data.histograms.get(r["iteration"], {})} for r in data.kept])}
<h2>Lengths (characters)</h2>{_table(data.lengths)}
<h2>Curation quality vs labels</h2>{_table(quality) if quality else "<p>not configured (eval.curation_labels)</p>"}
</body></html>
"""
    write_text(page, path)


def build_report(models: list[str], iterations: list[str], paths: ReportPaths, **label_opts) -> ReportData:
    browser = (paths.candidates, paths.rejected, paths.scored)
    if any(p is None for p in browser) and any(p is not None for p in browser):
        raise ValueError("the candidate browser needs all of candidates, rejected and scored, or none")
    data = collect(models, iterations, paths, **label_opts)
    write_plot_data(data, paths.plots)
    render_png(data, paths.report / "report.png")
    if paths.candidates is not None:
        build_candidates_page(iterations, CandidatePaths(
            candidates=paths.candidates, rejected=paths.rejected, scored=paths.scored, curated=paths.curated,
            curation_metrics=paths.curation_metrics), paths.report / PAGE)
    render_html(data, paths.report / "index.html", "report.png", PAGE if paths.candidates is not None else None)
    write_json(data.quality, paths.curation_quality)
    return data

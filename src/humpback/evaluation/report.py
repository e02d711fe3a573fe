"""The report: DVC plot data under metrics/plots/, one PNG and one HTML page under metrics/report/.

Every input belongs to a configured model (eval.models) or iteration (`iterations`): a missing one
is an error, since the report would otherwise silently show less than the pipeline ran.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from humpback.config import inside
from humpback.errors import InputError
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


@dataclass
class ReportData:
    win_rates: list[dict] = field(default_factory=list)
    histograms: dict[str, dict[str, int]] = field(default_factory=dict)
    kept: list[dict] = field(default_factory=list)
    lengths: list[dict] = field(default_factory=list)
    quality: dict = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    data = read_json(path, "file not found (its stage has not run)")
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    return data


def win_rate_rows(models: list[str], directory: Path) -> list[dict]:
    rows = []
    for m in models:
        path = directory / f"{m}.json"
        data = _read_json(path)
        if "win_rate" not in data:
            raise InputError(path, "no 'win_rate' key")
        rows.append({"model": m, **{k: data.get(k) for k in (
            "win_rate", "lc_win_rate", "standard_error", "discrete_win_rate", "avg_length", "n_total", "reference",
            "judge")}})
    return rows


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
    for it, hist in data.histograms.items():
        # an iteration name from params becomes a file name: it stays inside the plots directory
        write_json([{"score": b, "count": n} for b, n in hist.items()], inside(directory, "curation", f"{it}.json"))


def render_png(data: ReportData, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
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

    fig.tight_layout()
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


def render_html(data: ReportData, path: Path, png_name: str) -> None:
    quality = [{"iteration": it, **q} for it, q in data.quality.get("iterations", {}).items()]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>humpback report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}</style></head>
<body><h1>humpback evaluation report</h1>
<img src="{html.escape(png_name)}" alt="win rates, curation scores, kept data, lengths" style="max-width:100%">
<h2>Win rates</h2>{_table(data.win_rates)}
<h2>Curation per iteration</h2>{_table([{**r, **data.histograms.get(r["iteration"], {})} for r in data.kept])}
<h2>Lengths (characters)</h2>{_table(data.lengths)}
<h2>Curation quality vs labels</h2>{_table(quality) if quality else "<p>not configured (eval.curation_labels)</p>"}
</body></html>
"""
    write_text(page, path)


def build_report(models: list[str], iterations: list[str], paths: ReportPaths, **label_opts) -> ReportData:
    data = collect(models, iterations, paths, **label_opts)
    write_plot_data(data, paths.plots)
    render_png(data, paths.report / "report.png")
    render_html(data, paths.report / "index.html", "report.png")
    write_json(data.quality, paths.curation_quality)
    return data

"""The report's candidate browser: metrics/report/candidates.html, one self-contained page (inline CSS
and JS, the rows embedded as JSON, nothing fetched) listing the generated candidate pairs with each
iteration's score and select's verdict and reason, and the instructions augment rejected with theirs.

Bounded size: the paper's corpus gives hundreds of thousands of candidates, more than a page can
hold or a browser filter quickly, so the page embeds a sample, the same on every run: within each
group (kept in some iteration / scored but kept in none / rejected at augment) the rows whose
BLAKE2b hash of segment_id is smallest, up to that group's cap. A row's place in the sample
depends on its id alone, so it does not move when other rows come or go. Every group smaller
than its cap is embedded whole, which covers the default pipeline (about 530 segments). Texts
longer than MAX_TEXT characters are cut, with the cut stated. The page says how many rows of
each group it shows. In the page the sampled rows are filtered, sorted and shown 100 at a time.

Select writes only the kept rows; the verdict of every other one comes from
humpback.curation.selection.explain, which runs select's own rules with the settings that
select@<iteration> recorded in metrics/curation/<iteration>.json. Its kept rows must be exactly
data/curated/<iteration>.parquet's, or the inputs are stale and the page would lie: an error.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from humpback.curation.config import SelectConfig
from humpback.curation.selection import explain
from humpback.errors import InputError
from humpback.evaluation.curation_quality import read_kept
from humpback.io import write_text
from humpback.readers import check_columns, check_file, is_parquet, parquet_error, read_json, read_table

PAGE = "candidates.html"
# The sample's caps per group and the longest text embedded; the page states them.
MAX_KEPT = 2000
MAX_DROPPED = 2000
MAX_AUGMENT_REJECTED = 1000
MAX_TEXT = 4000
# metrics/curation/<iteration>.json key -> SelectConfig field
SELECT_KEYS = {"curate": "curate", "threshold": "threshold", "max_examples": "max_examples",
               "top_share": "top_share", "sample": "sample", "sample_seed": "seed"}


@dataclass
class CandidatePaths:
    candidates: Path  # data/augmented/candidates.parquet: the pairs every iteration scores
    rejected: Path  # data/augmented/rejected.parquet: the instructions augment filtered out, with reason
    scored: Path  # data/scores/<iteration>.parquet
    curated: Path  # data/curated/<iteration>.parquet: select's kept rows
    curation_metrics: Path  # metrics/curation/<iteration>.json: select's settings


@dataclass
class Caps:
    kept: int = MAX_KEPT
    dropped: int = MAX_DROPPED
    augment_rejected: int = MAX_AUGMENT_REJECTED
    text: int = MAX_TEXT


def _columns(path: Path, columns: list[str]) -> pl.DataFrame:
    """Only `columns` of a table: a scores table also holds every rating's text, far more than the page needs."""
    path = check_file(path, missing="file not found (its stage has not run)")
    if not is_parquet(path):
        return read_table(path, columns, allow_empty=True).select(columns)
    try:
        check_columns(path, list(pl.read_parquet_schema(path)), columns)
        return pl.read_parquet(path, columns=columns)
    except InputError:
        raise
    except Exception as e:  # polars raises several types for corrupt files
        raise parquet_error(path, e) from None


def select_config(path: Path) -> SelectConfig:
    """The select settings select@<iteration> ran with, as it recorded them."""
    data = read_json(path, "file not found (its stage has not run)")
    missing = [k for k in SELECT_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise InputError(path, f"missing key(s) {', '.join(missing)}: written by an older select; rerun select")
    try:
        return SelectConfig(**{field: data[key] for key, field in SELECT_KEYS.items()})
    except (TypeError, ValueError) as e:
        raise InputError(path, f"select settings: {e}") from None


def verdicts(iteration: str, paths: CandidatePaths) -> pl.DataFrame:
    """segment_id, score, kept, reason, detail of every candidate scored in `iteration`."""
    scored_path = paths.scored / f"{iteration}.parquet"
    scored = _columns(scored_path, ["segment_id", "score"]).with_columns(pl.col("segment_id").cast(pl.String))
    if not (scored["score"].dtype.is_numeric() or scored["score"].dtype == pl.Null):
        raise InputError(scored_path, f"column 'score' must hold numbers, it holds {scored['score'].dtype}")
    scored = scored.with_columns(pl.col("score").cast(pl.Float64))
    verdict = explain(scored, select_config(paths.curation_metrics / f"{iteration}.json"), source=str(scored_path))
    curated_path = paths.curated / f"{iteration}.parquet"
    kept = set(read_kept(curated_path, "segment_id")["segment_id"].cast(pl.String).to_list())
    if kept != set(verdict.filter("kept")["segment_id"].to_list()):
        raise InputError(curated_path, f"its kept rows are not the ones select's recorded settings keep from "
                                       f"{scored_path}: the two are from different runs; rerun select@{iteration}")
    return verdict.join(scored, on="segment_id", how="left")


def _sample(ids: list[str], cap: int) -> list[str]:
    """Up to `cap` of `ids`: those with the smallest hash, so a row's membership depends on its id only."""
    if len(ids) <= cap:
        return list(ids)
    return sorted(ids, key=lambda i: hashlib.blake2b(i.encode(), digest_size=8).digest())[:cap]


def _cut(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit]


def _score(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _lazy(path: Path) -> pl.LazyFrame:
    return (pl.scan_parquet(path) if is_parquet(path) else read_table(path, allow_empty=True).lazy()).with_columns(
        pl.col("segment_id").cast(pl.String))


def collect(iterations: list[str], paths: CandidatePaths, caps: Caps | None = None) -> dict:
    """The page's data: meta (counts, caps, iterations) and the sampled rows."""
    caps = caps or Caps()
    wide = _columns(paths.candidates, ["segment_id"]).with_columns(pl.col("segment_id").cast(pl.String))
    if wide["segment_id"].is_duplicated().any():
        raise InputError(paths.candidates, "duplicate segment_id")
    wide = wide.with_row_index("n")
    for k, it in enumerate(iterations):
        v = verdicts(it, paths)
        if v.height != wide.height or wide.join(v, on="segment_id", how="anti").height:
            raise InputError(paths.scored / f"{it}.parquet", f"its rows are not the candidates of {paths.candidates}: "
                                                              f"the two are from different runs; rerun score@{it}")
        wide = wide.join(v.rename({c: f"{c}{k}" for c in v.columns if c != "segment_id"}), on="segment_id", how="left")
    kept_any = pl.any_horizontal([pl.col(f"kept{k}") for k in range(len(iterations))]) if iterations else pl.lit(False)
    wide = wide.with_columns(kept_any.alias("kept_any"))
    kept_ids = wide.filter("kept_any")["segment_id"].to_list()
    dropped_ids = wide.filter(~pl.col("kept_any"))["segment_id"].to_list()
    rejected = _columns(paths.rejected, ["segment_id", "reason"]).with_columns(pl.col("segment_id").cast(pl.String))
    if rejected["segment_id"].is_duplicated().any():
        raise InputError(paths.rejected, "duplicate segment_id")

    chosen = _sample(kept_ids, caps.kept) + _sample(dropped_ids, caps.dropped)
    texts = _lazy(paths.candidates).filter(pl.col("segment_id").is_in(chosen)).select("segment_id", "instruction", "output")
    rows = []
    for r in wide.join(texts.collect(), on="segment_id", how="inner").sort("n").iter_rows(named=True):
        rows.append({"n": r["n"], "id": r["segment_id"], "ins": _cut(r["instruction"], caps.text),
                     "seg": _cut(r["output"], caps.text), "len": len(r["output"] or ""), "aug": None,
                     "it": [[_score(r[f"score{k}"]), r[f"kept{k}"], r[f"reason{k}"], r[f"detail{k}"]]
                            for k in range(len(iterations))]})
    chosen_rejected = _sample(rejected["segment_id"].to_list(), caps.augment_rejected)
    if chosen_rejected:
        rej = _lazy(paths.rejected).with_row_index("n").filter(pl.col("segment_id").is_in(chosen_rejected)).collect()
        check_columns(paths.rejected, rej.columns, ["instruction", "output", "reason"])
        for r in rej.sort("n").iter_rows(named=True):
            raw = r.get("raw_instruction")
            rows.append({"n": wide.height + r["n"], "id": r["segment_id"], "ins": _cut(r["instruction"], caps.text),
                         "raw": _cut(raw, caps.text) if raw is not None and raw != r["instruction"] else None,
                         "seg": _cut(r["output"], caps.text), "len": len(r["output"] or ""),
                         "aug": [r["reason"], r.get("detail")], "it": [None] * len(iterations)})
    meta = {"iterations": iterations,
            "counts": {"candidates": wide.height, "kept": len(kept_ids), "dropped": len(dropped_ids),
                       "augment_rejected": rejected.height},
            "shown": {"kept": min(len(kept_ids), caps.kept), "dropped": min(len(dropped_ids), caps.dropped),
                      "augment_rejected": len(chosen_rejected)},
            "caps": {"kept": caps.kept, "dropped": caps.dropped, "augment_rejected": caps.augment_rejected,
                     "text": caps.text}}
    return {"meta": meta, "rows": rows}


def script_json(obj) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survives (so no text can close the element
    or open a comment), nor the two line separators old JavaScript parsers choke on."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _sampling_text(meta: dict) -> str:
    c, s, cap = meta["counts"], meta["shown"], meta["caps"]
    parts = [f"{s['kept']:,} of {c['kept']:,} candidates kept in some iteration",
             f"{s['dropped']:,} of {c['dropped']:,} scored but kept in none",
             f"{s['augment_rejected']:,} of {c['augment_rejected']:,} instructions rejected at augment"]
    whole = s["kept"] == c["kept"] and s["dropped"] == c["dropped"] and s["augment_rejected"] == c["augment_rejected"]
    how = ("every row is shown" if whole else
           f"a group larger than its cap ({cap['kept']:,} kept, {cap['dropped']:,} kept in none, "
           f"{cap['augment_rejected']:,} rejected at augment) is sampled: the rows with the smallest BLAKE2b hash of "
           "segment_id, the same on every run")
    return (f"This page holds {'; '.join(parts)}: {how}. Texts longer than {cap['text']:,} characters are cut "
            "(the length column gives the full length).")


def render(data: dict, path: Path) -> None:
    meta = data["meta"]
    page = (_TEMPLATE.replace("%%SAMPLING%%", html.escape(_sampling_text(meta)))
            .replace("%%DATA%%", script_json(data)))
    write_text(page, path)


def build_candidates_page(iterations: list[str], paths: CandidatePaths, out: Path, caps: Caps | None = None) -> dict:
    data = collect(iterations, paths, caps)
    render(data, out)
    return data


# Every text from the data reaches the page through textContent or an attribute set from script,
# never as markup.
_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>humpback candidates</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
.note{color:#555;max-width:70em;font-size:.9em}
#controls{display:flex;flex-wrap:wrap;gap:.6em 1.2em;align-items:center;margin:1em 0;padding:.6em;background:#f5f5f5;
border:1px solid #ddd}
#controls label{font-size:.9em}
#controls input[type=number]{width:5em}
#q{width:22em}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th,td{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left;font-size:.88em;overflow-wrap:anywhere}
th{background:#eee;cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;white-space:nowrap}
details pre{white-space:pre-wrap;font-family:inherit;margin:.4em 0 0;background:#fafafa;padding:.4em}
summary{cursor:pointer}
.kept{color:#11702a;font-weight:bold}
.rejected{color:#a01818;font-weight:bold}
.why{color:#555;font-size:.85em;display:block}
.raw{color:#777;font-size:.85em;display:block}
#pager{margin:.8em 0;display:flex;gap:1em;align-items:center}
</style></head>
<body>
<h1>Candidate pairs</h1>
<p class="note"><a href="index.html">Back to the report</a>. Each generated instruction with its web segment (click an excerpt
for the whole text), each iteration's curation score, and whether select kept it and why; instructions that augment
rejected before scoring are listed with augment's reason.</p>
<p class="note" id="sampling">%%SAMPLING%%</p>
<div id="controls">
<label>Search <input id="q" type="search" placeholder="instruction, segment, reason, id"></label>
<label>Iteration <select id="iteration"><option value="">any</option></select></label>
<label>Status <select id="status"><option value="">all</option><option value="kept">kept</option>
<option value="rejected">rejected</option></select></label>
<label>Reason <select id="reason"><option value="">all</option></select></label>
<label>Score from <input id="smin" type="number" step="0.1" min="1" max="5"></label>
<label>to <input id="smax" type="number" step="0.1" min="1" max="5"></label>
<span id="count" aria-live="polite"></span>
</div>
<div id="pager"><button id="prev" type="button">previous</button><span id="pageinfo"></span>
<button id="next" type="button">next</button></div>
<table><thead><tr id="head"></tr></thead><tbody id="rows"></tbody></table>
<script id="data" type="application/json">%%DATA%%</script>
<script>
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const ITS = DATA.meta.iterations, ROWS = DATA.rows, PAGE = 100, EXCERPT = 160;
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  // per row and iteration: {score, kept, reason, detail}; augment's rejections are rejected in every iteration
  for (const r of ROWS) {
    r.v = ITS.map((_, i) => r.aug ? {score: null, kept: false, reason: "augment: " + r.aug[0], detail: r.aug[1]}
      : {score: r.it[i][0], kept: r.it[i][1], reason: r.it[i][2], detail: r.it[i][3]});
    r.hay = [r.id, r.ins, r.raw || "", r.seg, ...r.v.map((v) => v.reason + " " + (v.detail || ""))].join("\\n").toLowerCase();
  }
  const reasons = [...new Set(ROWS.flatMap((r) => r.v.map((v) => v.reason)))].sort();
  ITS.forEach((it, i) => $("iteration").append(new Option(it, String(i))));
  reasons.forEach((x) => $("reason").append(new Option(x, x)));

  const COLS = [{key: "n", label: "#", width: "3.5em", val: (r) => r.n},
                {key: "ins", label: "instruction", width: "22%", val: (r) => r.ins.toLowerCase()},
                {key: "seg", label: "segment", width: "", val: (r) => r.seg.toLowerCase()},
                {key: "len", label: "chars", width: "5em", val: (r) => r.len}];
  ITS.forEach((it, i) => {
    COLS.push({key: "score" + i, label: it + " score", width: "5.5em", val: (r) => r.v[i].score});
    COLS.push({key: "status" + i, label: it + " verdict", width: "13%", val: (r) => r.v[i].kept ? 0 : 1});
  });
  let sortKey = "n", sortDir = 1, page = 0, shown = ROWS;

  for (const c of COLS) {
    const th = el("th", null, c.label);
    th.dataset.key = c.key;
    if (c.width) th.style.width = c.width;
    th.addEventListener("click", () => {
      sortDir = sortKey === c.key ? -sortDir : 1;
      sortKey = c.key;
      update();
    });
    $("head").append(th);
  }

  function num(id) {
    const v = $(id).value.trim();
    return v === "" ? null : Number(v);
  }
  function matches(v, status, reason, lo, hi) {
    if (status === "kept" && !v.kept) return false;
    if (status === "rejected" && v.kept) return false;
    if (reason && v.reason !== reason) return false;
    if ((lo !== null || hi !== null) && v.score === null) return false;
    if (lo !== null && v.score < lo) return false;
    if (hi !== null && v.score > hi) return false;
    return true;
  }
  function filtered() {
    const q = $("q").value.trim().toLowerCase(), it = $("iteration").value, status = $("status").value;
    const reason = $("reason").value, lo = num("smin"), hi = num("smax");
    return ROWS.filter((r) => (!q || r.hay.includes(q)) &&
      (it === "" ? r.v.some((v) => matches(v, status, reason, lo, hi)) : matches(r.v[Number(it)], status, reason, lo, hi)));
  }
  function sorted(rows) {
    const col = COLS.find((c) => c.key === sortKey);
    return rows.map((r) => [col.val(r), r]).sort((a, b) => {
      if (a[0] === b[0]) return a[1].n - b[1].n;
      if (a[0] === null) return 1;  // no score: last either way
      if (b[0] === null) return -1;
      return (a[0] < b[0] ? -1 : 1) * sortDir;
    }).map((p) => p[1]);
  }
  function cell(r) {
    const td = el("td");
    const d = el("details"), s = el("summary", null, r.seg.length > EXCERPT ? r.seg.slice(0, EXCERPT) + "\\u2026" : r.seg);
    d.append(s, el("pre", null, r.len > r.seg.length ? r.seg + "\\n[\\u2026 cut at " + r.seg.length + " of " + r.len +
      " characters]" : r.seg));
    td.append(d);
    return td;
  }
  function row(r) {
    const tr = el("tr");
    tr.dataset.id = r.id;
    tr.append(el("td", "num", r.n));
    const ins = el("td", "ins", r.ins);
    if (r.raw) ins.append(el("span", "raw", "as generated: " + r.raw));
    tr.append(ins, cell(r), el("td", "num", r.len));
    r.v.forEach((v) => {
      tr.append(el("td", "num score", v.score === null ? "" : v.score.toFixed(2)));
      const td = el("td", "verdict");
      td.append(el("span", v.kept ? "kept" : "rejected", v.kept ? "kept" : "rejected"),
                el("span", "why", v.reason === "kept" ? v.detail : v.reason + (v.detail ? ": " + v.detail : "")));
      tr.append(td);
    });
    return tr;
  }
  function render() {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    const body = $("rows");
    body.replaceChildren(...shown.slice(page * PAGE, (page + 1) * PAGE).map(row));
    $("pageinfo").textContent = "page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    $("count").textContent = shown.length + " of " + ROWS.length + " rows match";
    for (const th of $("head").children)
      th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
  }
  function update() {
    shown = sorted(filtered());
    page = 0;
    render();
  }
  for (const id of ["q", "iteration", "status", "reason", "smin", "smax"]) $(id).addEventListener("input", update);
  $("prev").addEventListener("click", () => { page -= 1; render(); });
  $("next").addEventListener("click", () => { page += 1; render(); });
  update();
})();
</script>
</body></html>
"""

"""Sources -> segments -> filters -> exact and near dedup -> decontamination -> language ->
segments.parquet + rejected.parquet, streaming.

Documents are read as a generator and cut into segments; every `batch_size` segments become one
polars frame that is filtered, deduplicated against everything kept so far and appended to the two
Parquet outputs, so memory stays flat in the corpus size (only the dedup indexes grow). Every
document is accounted for: a page with nothing visible on it is rejected as `empty_document`, one
the parser or the UTF-8 writer cannot take (a lone surrogate) as `unparseable`. Both files
are written to temporary paths and renamed at the end: a failed run leaves no partial output.
The metrics are counts only, a function of the inputs and params like the two files (DVC records
their md5); the time taken is logged, and handed to a caller that asks for it (`timings`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from humpback.corpus.config import CorpusConfig, SourceConfig
from humpback.corpus.dedup import ExactDedup, NearDedup, normalise, text_hashes
from humpback.corpus.filters import apply_filters
from humpback.corpus.packages import inventory_digest, read_inventory
from humpback.corpus.segment import (
    Section,
    canonical_url,
    parse_html,
    segment_html,
    segment_markdown,
    segment_plain,
    segment_rst,
)
from humpback.corpus.sources import DocReject, Document, Skip, iter_source
from humpback.decontamination import ContaminationIndex, EvalText, describe
from humpback.errors import EmptyResultError
from humpback.io import atomic_path
from humpback.language import detect

log = logging.getLogger("humpback.corpus")

SEGMENT_SCHEMA = {
    "segment_id": pl.String,  # stable: a hash of doc_id, header and text
    "source": pl.String,
    "doc_id": pl.String,
    "url": pl.String,
    "header": pl.String,
    "level": pl.Int8,  # 1-6; 0 = text before the first header or a headerless document
    "position": pl.Int32,  # index of the segment in its document
    "text": pl.String,
    "n_chars": pl.Int32,
}
REJECTED_SCHEMA = {**SEGMENT_SCHEMA, "reason": pl.String, "detail": pl.String}
_BATCH_COLUMNS = ["segment_id", "source", "doc_id", "url", "header", "level", "position", "text", "whole_doc",
                  "headerless_ok"]


def segment_id(doc_id: str, header: str, text: str) -> str:
    return hashlib.blake2b(f"{doc_id}\x00{header}\x00{text}".encode(), digest_size=8).hexdigest()


def sections_of(doc: Document) -> tuple[list[Section], str]:
    """The sections of a document and its URL (an HTML page may name its canonical URL)."""
    if doc.fmt == "html":
        tree = parse_html(doc.content)
        return segment_html(tree), doc.url or canonical_url(tree)
    if doc.fmt == "rst":
        return segment_rst(doc.content), doc.url
    if doc.fmt == "plain":
        return segment_plain(doc.content), doc.url
    return segment_markdown(doc.content), doc.url


class _Stats:
    def __init__(self) -> None:
        self.docs = Counter()  # per source label
        self.segments = Counter()
        self.kept = Counter()
        self.rejected = Counter()  # per reason (documents and segments)
        self.skipped = Counter()  # per reason (records that are not documents)
        self.docs_rejected = 0
        self.kept_docs: set[tuple[str, str]] = set()
        self.kept_chars = 0


def _batches(cfg: CorpusConfig, stats: _Stats) -> Iterator[tuple[dict[str, list], list[DocReject]]]:
    """Segment columns of about `batch_size` segments each, with the documents rejected on the way."""
    cols: dict[str, list] = {c: [] for c in _BATCH_COLUMNS}
    doc_rejects: list[DocReject] = []
    for src in cfg.sources:
        for item in iter_source(src, cfg.max_record_bytes):
            if isinstance(item, Skip):
                stats.skipped[item.reason] += 1
                continue
            stats.docs[item.source] += 1
            if isinstance(item, DocReject):
                doc_rejects.append(item)
                continue
            try:
                sections, url = sections_of(item)
                # every string must be writable as UTF-8 (Parquet, hashing): a lone surrogate is this page's fault
                ids = [segment_id(item.doc_id, header, text) for header, _, text in sections]
                url.encode()
            except Exception as e:  # one pathological page must not stop a web-scale run; it is counted
                doc_rejects.append(DocReject(item.source, item.doc_id, item.url, "unparseable",
                                             " ".join(f"{type(e).__name__}: {e}".split())[:300]))
                continue
            if not sections:  # nothing visible on the page (blank, scripts only, zero-width characters)
                doc_rejects.append(DocReject(item.source, item.doc_id, url, "empty_document", "no visible text"))
                continue
            whole = len(sections) == 1 and sections[0].level == 0
            for pos, ((header, level, text), sid) in enumerate(zip(sections, ids, strict=True)):
                cols["segment_id"].append(sid)
                cols["source"].append(item.source)
                cols["doc_id"].append(item.doc_id)
                cols["url"].append(url)
                cols["header"].append(header)
                cols["level"].append(level)
                cols["position"].append(pos)
                cols["text"].append(text)
                cols["whole_doc"].append(whole)
                cols["headerless_ok"].append(item.headerless_ok)
            stats.segments[item.source] += len(sections)
            if len(cols["text"]) >= cfg.batch_size or len(doc_rejects) >= cfg.batch_size:
                yield cols, doc_rejects
                cols, doc_rejects = {c: [] for c in _BATCH_COLUMNS}, []
    if cols["text"] or doc_rejects:
        yield cols, doc_rejects


def _process(cols: dict[str, list], cfg: CorpusConfig, exact: ExactDedup | None, near: NearDedup | None,
             contamination: ContaminationIndex | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Filter, deduplicate, decontaminate and language-check one batch: (kept, rejected) frames."""
    frame = pl.DataFrame(cols, schema={**{c: SEGMENT_SCHEMA[c] for c in _BATCH_COLUMNS[:-2]},
                                       "whole_doc": pl.Boolean, "headerless_ok": pl.Boolean})
    frame = frame.with_columns(n_chars=pl.col("text").str.len_chars().cast(pl.Int32))
    frame = apply_filters(frame, cfg)
    reasons = frame["reason"].to_list()
    details: list[str | None] = [None] * frame.height
    live = [i for i, r in enumerate(reasons) if r is None]
    if live and (exact or near):
        sub = frame[live]
        norm = sub.select(normalise(pl.col("text"))).to_series()
        ids = sub["segment_id"].to_list()
        if exact:
            for row, first in enumerate(exact.check(text_hashes(norm), ids)):
                if first is not None:
                    reasons[live[row]], details[live[row]] = "exact_duplicate", f"same text as {first}"
        if near:
            rest = [row for row in range(len(live)) if reasons[live[row]] is None]
            for row, first in zip(rest, near.check(norm[rest], [ids[r] for r in rest]), strict=True):
                if first is not None:
                    reasons[live[row]], details[live[row]] = "near_duplicate", f"near copy of {first}"
    # after the dedup, so its indexes see exactly what they saw before; only survivors are checked
    rest = [i for i, r in enumerate(reasons) if r is None]
    if rest and contamination is not None:
        norm = frame[rest].select(normalise(pl.col("text"))).to_series()
        for i, match in zip(rest, contamination.check(norm), strict=True):
            if match is not None:
                reasons[i], details[i] = "contaminated", describe(match, contamination.n)
        rest = [i for i in rest if reasons[i] is None]
    if rest and cfg.languages:
        allowed = set(cfg.languages)
        for i, (lang, prob) in zip(rest, detect(frame["text"].gather(rest).to_list()), strict=True):
            if lang not in allowed and prob >= cfg.min_language_prob:
                reasons[i], details[i] = "language", f"{lang} {prob:.3f}"
    frame = frame.with_columns(pl.Series("reason", reasons, dtype=pl.String),
                               pl.Series("detail", details, dtype=pl.String))
    kept = frame.filter(pl.col("reason").is_null()).select(list(SEGMENT_SCHEMA))
    rejected = frame.filter(pl.col("reason").is_not_null()).select(list(REJECTED_SCHEMA))
    return kept, rejected


def _doc_reject_frame(rejects: list[DocReject]) -> pl.DataFrame:
    rows = {c: [] for c in REJECTED_SCHEMA}
    for r in rejects:
        for c, v in (("segment_id", segment_id(r.doc_id, "", "")), ("source", r.source), ("doc_id", r.doc_id),
                     ("url", r.url), ("header", ""), ("level", 0), ("position", -1), ("text", ""), ("n_chars", 0),
                     ("reason", r.reason), ("detail", r.detail)):
            rows[c].append(v)
    return pl.DataFrame(rows, schema=REJECTED_SCHEMA)


def prepare_corpus(cfg: CorpusConfig, segments_path: str | Path, rejected_path: str | Path,
                   timings: dict | None = None, eval_texts: list[EvalText] | None = None) -> dict:
    """Run the whole preparation; write both Parquet files atomically and return the metrics.

    `eval_texts`: the eval prompts and reference answers no kept segment may share an n-gram with
    (`corpus.decontamination`); None = no decontamination.
    `timings`, when given, receives seconds, cpu_seconds (all threads) and segments_per_second.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    stats = _Stats()
    exact = ExactDedup() if cfg.exact_dedup else None
    near = NearDedup(cfg.minhash_num_perm, cfg.minhash_threshold, cfg.shingle_size, cfg.seed) if cfg.near_dedup else None
    ngram = cfg.decontamination.ngram
    contamination = ContaminationIndex(eval_texts, ngram) if eval_texts is not None and ngram > 0 else None
    kept_schema = pl.DataFrame(schema=SEGMENT_SCHEMA).to_arrow().schema
    rejected_schema = pl.DataFrame(schema=REJECTED_SCHEMA).to_arrow().schema
    with atomic_path(segments_path) as seg_tmp, atomic_path(rejected_path) as rej_tmp, \
            pq.ParquetWriter(seg_tmp, kept_schema) as kept_out, pq.ParquetWriter(rej_tmp, rejected_schema) as rej_out:
        for cols, doc_rejects in _batches(cfg, stats):
            kept, rejected = _process(cols, cfg, exact, near, contamination)
            if doc_rejects:
                rejected = pl.concat([_doc_reject_frame(doc_rejects), rejected])
                stats.docs_rejected += len(doc_rejects)
            if kept.height:
                kept_out.write_table(kept.to_arrow().cast(kept_schema))
            if rejected.height:
                rej_out.write_table(rejected.to_arrow().cast(rejected_schema))
            for source, n in kept.group_by("source").len().iter_rows():
                stats.kept[source] += n
            stats.kept_docs.update(kept.select("source", "doc_id").iter_rows())
            stats.kept_chars += int(kept["n_chars"].sum() or 0)
            stats.rejected.update(dict(rejected.group_by("reason").len().iter_rows()))
            log.info("%d segments kept so far (%d rejected)", sum(stats.kept.values()), sum(stats.rejected.values()))
        n_kept = sum(stats.kept.values())
        if n_kept == 0:
            raise EmptyResultError(
                f"corpus: no segment survived the filters ({dict(stats.rejected.most_common())}); "
                "loosen min_chars/max_chars or the header filters in params `corpus:`")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    n_segments = sum(stats.segments.values())
    rate = round(n_segments / seconds, 1) if seconds > 0 else None
    log.info("%d segments in %.2f s (%.2f CPU s, %s segments/s)", n_segments, seconds, cpu_seconds, rate)
    if timings is not None:
        timings.update(seconds=round(seconds, 2), cpu_seconds=round(cpu_seconds, 2), segments_per_second=rate)
    return {
        "sources": [_source_metrics(s, stats) for s in cfg.sources],
        "docs_in": sum(stats.docs.values()),
        "docs_rejected": stats.docs_rejected,
        "docs_kept": len(stats.kept_docs),
        "segments_in": n_segments,
        "segments_kept": n_kept,
        "segments_rejected": sum(n for r, n in stats.rejected.items()) - stats.docs_rejected,
        "rejected": dict(sorted(stats.rejected.items())),
        "skipped_records": dict(sorted(stats.skipped.items())),
        "mean_chars_kept": round(stats.kept_chars / n_kept, 1),
        # what the eval-set and language checks did (their rejections are also under "rejected")
        "decontamination": {"ngram": ngram if contamination else 0, "eval_texts": len(eval_texts or []),
                            "patterns": len(contamination) if contamination else 0,
                            "rejected": stats.rejected.get("contaminated", 0)},
        "language": {"allowed": list(cfg.languages), "min_prob": cfg.min_language_prob,
                     "rejected": stats.rejected.get("language", 0)},
    }


def _source_metrics(src: SourceConfig, stats: _Stats) -> dict:
    out = {"name": src.label, "kind": src.kind, "path": src.path, "docs": stats.docs[src.label],
           "segments": stats.segments[src.label], "kept": stats.kept[src.label]}
    if src.kind == "packages":  # which distributions, at which versions: the digest of the applied pins
        out["inventory"] = inventory_digest(read_inventory(src.path))
    return out

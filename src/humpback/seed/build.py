"""Combine the seed sources: read, filter by length, deduplicate, cap each source, count every reason."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass

import polars as pl

from humpback.decontamination import ContaminationIndex, EvalText, describe, normalise_texts
from humpback.errors import ConfigError, EmptyResultError
from humpback.seed.config import SeedConfig, SeedSource
from humpback.seed.oasst import read_oasst
from humpback.seed.pairs import Row, read_pairs
from humpback.text import has_visible

KEPT_SCHEMA = {"instruction": pl.String, "output": pl.String, "source": pl.String, "source_id": pl.String}
REJECTED_SCHEMA = {**KEPT_SCHEMA, "reason": pl.String, "detail": pl.String}


@dataclass
class SeedResult:
    kept: pl.DataFrame  # instruction, output, source, source_id: the training pairs
    rejected: pl.DataFrame  # the same plus reason
    metrics: dict
    heldout: pl.DataFrame | None = None  # same columns as kept, set aside by split_heldout; never trained on


def read_source(source: SeedSource, cfg: SeedConfig) -> tuple[list[Row], dict]:
    if source.kind == "oasst":
        return read_oasst(source, cfg.lang, cfg.max_record_bytes)
    return read_pairs(source, cfg.max_record_bytes)


def length_reason(row: Row, min_chars: int, max_chars: int) -> str | None:
    for field in ("instruction", "output"):
        n = len(row[field])
        if not has_visible(row[field]):  # nothing but whitespace, zero-width or bidi characters
            return f"empty_{field}"
        if n < min_chars:
            return f"short_{field}"
        if max_chars and n > max_chars:
            return f"long_{field}"
    return None


def sample_key(seed: int, source_id: str) -> bytes:
    """A per-row random key fixed by (seed, id): the sample does not depend on file order or layout,
    and a larger max_examples keeps a superset of a smaller one."""
    return hashlib.blake2b(f"{seed}\x00{source_id}".encode(), digest_size=16).digest()


def heldout_key(seed: int, instruction: str, output: str) -> bytes:
    """The held-out rank of a pair: a seeded hash of its text alone, so whether a pair is held out
    does not depend on its source, id, row position or the other pairs; adding pairs can only
    displace the held-out ones they outrank."""
    return hashlib.blake2b(f"heldout\x00{seed}\x00{instruction}\x00{output}".encode(), digest_size=16).digest()


def split_heldout(result: SeedResult, count: int, seed: int) -> SeedResult:
    """Set `count` of the selected pairs aside (those of lowest heldout_key): the training pairs stay
    in `kept`, in their order, the rest go to `heldout`; metrics gain `heldout` and `kept` counts the
    training pairs. count 0 holds out nothing; leaving no training pair is a ConfigError."""
    kept = result.kept
    if count and count >= kept.height:
        raise ConfigError(f"seed.heldout: holding out {count} pairs leaves no training pair "
                          f"({kept.height} seed pairs selected); set it below {kept.height}, or 0 for none")
    keys = [heldout_key(seed, i, o) for i, o in zip(kept["instruction"], kept["output"], strict=True)]
    out = set(sorted(range(kept.height), key=lambda i: (keys[i], i))[:count])
    mask = pl.Series([i in out for i in range(kept.height)], dtype=pl.Boolean)
    train, heldout = kept.filter(~mask), kept.filter(mask)
    # kept: the training pairs (seed.parquet); selected: kept + heldout
    metrics = {"kept": train.height, "heldout": heldout.height, "selected": kept.height,
               **{k: v for k, v in result.metrics.items() if k not in ("kept", "heldout", "selected")}}
    return SeedResult(kept=train, rejected=result.rejected, metrics=metrics, heldout=heldout)


def build_seed(cfg: SeedConfig) -> SeedResult:
    """Read every source (all input faults raise before anything is returned) and pick the seed pairs."""
    per_source: list[tuple[SeedSource, list[Row], dict]] = []
    for source in cfg.sources:
        rows, stats = read_source(source, cfg)
        per_source.append((source, rows, stats))

    seen: set[tuple[str, str]] = set()
    for _, rows, _ in per_source:
        for row in rows:
            if row["reason"] is None:
                row["reason"] = length_reason(row, cfg.min_chars, cfg.max_chars)
            if row["reason"] is None:
                key = (row["instruction"], row["output"])
                row["reason"] = "duplicate" if key in seen else None
                seen.add(key)

    for source, rows, _ in per_source:
        cap = cfg.max_examples if source.max_examples is None else source.max_examples
        eligible = [i for i, r in enumerate(rows) if r["reason"] is None]
        if cap and len(eligible) > cap:
            ranked = sorted(eligible, key=lambda i: (sample_key(cfg.seed, rows[i]["source_id"]), i))
            for i in ranked[cap:]:
                rows[i]["reason"] = "over_max_examples"

    kept = [r for _, rows, _ in per_source for r in rows if r["reason"] is None]
    rejected = [r for _, rows, _ in per_source for r in rows if r["reason"] is not None]
    metrics = _metrics(per_source, len(kept))
    if not kept:
        summary = "; ".join(
            f"{s['name']} ({s['candidates']} candidates, rejected: "
            + (", ".join(f"{k} {v}" for k, v in s["rejected"].items()) or "none") + ")"
            for s in metrics["sources"]
        )
        raise EmptyResultError(f"no seed pairs left after selection from: {summary}")
    return SeedResult(
        kept=pl.DataFrame(kept, schema={**KEPT_SCHEMA, "reason": pl.String}).drop("reason"),
        rejected=pl.DataFrame([{**r, "detail": None} for r in rejected], schema=REJECTED_SCHEMA),
        metrics=metrics,
    )


def decontaminate(result: SeedResult, texts: list[EvalText], n: int) -> SeedResult:
    """Move the pairs whose instruction or answer shares a word n-gram with an eval text to the
    rejected rows (reason `contaminated`, the eval id and shared words as detail): a seed pair that
    copies an eval prompt would teach its answer and inflate the win rates."""
    kept = result.kept
    index = ContaminationIndex(texts, n) if texts and n else None
    if index is None or kept.height == 0:
        return dataclasses.replace(result, metrics={**result.metrics, "contaminated": 0})
    matches = [index.check(pl.Series(normalise_texts(kept[col].to_list()))) for col in ("instruction", "output")]
    details = [describe(a or b, n) if (a or b) else None for a, b in zip(*matches, strict=True)]
    hit = pl.Series([d is not None for d in details], dtype=pl.Boolean)
    if not hit.any():
        return dataclasses.replace(result, metrics={**result.metrics, "contaminated": 0})
    dropped = kept.with_columns(reason=pl.lit("contaminated"), detail=pl.Series(details, dtype=pl.String)).filter(hit)
    if dropped.height == kept.height:
        raise EmptyResultError(f"every seed pair shares a {n}-word run with an eval text (first: {details[0]})")
    reasons = dict(result.metrics.get("rejected", {}))
    reasons["contaminated"] = dropped.height
    metrics = {**result.metrics, "kept": kept.height - dropped.height, "contaminated": dropped.height,
               "rejected": dict(sorted(reasons.items()))}
    return SeedResult(kept=kept.filter(~hit), rejected=pl.concat([result.rejected, dropped.select(list(REJECTED_SCHEMA))]),
                      metrics=metrics)


def _metrics(per_source: list[tuple[SeedSource, list[Row], dict]], total: int) -> dict:
    sources = []
    rejected_all: Counter[str] = Counter()
    for source, rows, stats in per_source:
        reasons = Counter(r["reason"] for r in rows if r["reason"] is not None)
        rejected_all.update(reasons)
        sources.append({
            "name": source.label,
            "kind": source.kind,
            "path": source.path,
            **stats,
            "candidates": len(rows),
            "selected": sum(r["reason"] is None for r in rows),
            "rejected": dict(sorted(reasons.items())),
        })
    return {"kept": total, "rejected": dict(sorted(rejected_all.items())), "sources": sources}

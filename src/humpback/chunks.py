"""Resumable chunked processing for long generation and scoring stages.

Rows are cut into fixed chunks; each finished chunk is written atomically as its own Parquet part
under `<out>.parts/`. A stage killed at any point and re-run skips the finished parts, and since a
chunk's randomness is seeded from (seed, chunk index) alone, the final output is the same as an
uninterrupted run. The parts are concatenated into `<out>` atomically and then removed. A parts
directory written for other inputs or settings (its fingerprint differs) is discarded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from humpback.io import write_parquet, write_text


def fingerprint(df: pl.DataFrame, settings: dict) -> str:
    """A digest of the input rows and the settings that shape the output."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(str(df.height).encode())
    h.update(str(df.hash_rows().sum()).encode())
    return h.hexdigest()[:16]


def model_stamp(model_dir: str | Path | None) -> list:
    """Names, sizes and mtimes of a model's files, for a fingerprint's settings: parts a different model wrote are discarded."""
    if model_dir is None or not Path(model_dir).is_dir():
        return []
    return sorted(
        (str(p.relative_to(model_dir)), p.stat().st_size, int(p.stat().st_mtime))
        for p in Path(model_dir).rglob("*") if p.is_file()
    )


def process_in_chunks(
    df: pl.DataFrame,
    out: str | Path,
    fn: Callable[[pl.DataFrame, int], pl.DataFrame],
    *,
    chunk_size: int,
    settings: dict | None = None,
    desc: str = "chunks",
) -> pl.DataFrame:
    """Apply `fn(chunk, chunk_index)` to each chunk of `df`, resumably; write and return the result."""
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    stamp = parts / "FINGERPRINT"
    fp = fingerprint(df, settings or {})
    if parts.exists() and (not stamp.is_file() or stamp.read_text().strip() != fp):
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    write_text(fp, stamp)
    n_chunks = max(1, -(-df.height // chunk_size))
    done = sum((parts / f"part-{i:05d}.parquet").is_file() for i in range(n_chunks))
    with tqdm(total=n_chunks, initial=done, desc=desc, unit="chunk") as bar:
        for i in range(n_chunks):
            part = parts / f"part-{i:05d}.parquet"
            if part.is_file():
                continue
            write_parquet(fn(df.slice(i * chunk_size, chunk_size), i), part)
            bar.update(1)
    result = pl.concat([pl.read_parquet(parts / f"part-{i:05d}.parquet") for i in range(n_chunks)], how="vertical")
    write_parquet(result, out)
    shutil.rmtree(parts)
    return result

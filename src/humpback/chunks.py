"""Resumable chunked processing for long generation and scoring stages.

Rows are cut into fixed chunks; each finished chunk is written atomically as its own Parquet part
under `<out>.parts/`. A stage killed at any point and re-run skips the finished parts, and since a
chunk's randomness is seeded from (seed, chunk index) alone, the final output is the same as an
uninterrupted run. The parts are concatenated into `<out>` atomically and then removed. A parts
directory written for other inputs, settings or chunking (its fingerprint differs) is discarded.

A stage's settings name everything else its output depends on: its params (`record`, minus an
explicit allow-list with reasons), the engine (`engine_settings`) and the model (`model_identity`,
by content).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from humpback.engines.config import EngineConfig
from humpback.errors import ConfigError, InputError, redact_url
from humpback.io import write_parquet, write_text
from humpback.models import META, follow_chain, read_meta

FORMAT = 2  # bump when the part layout or what a fingerprint covers changes: old parts are then discarded

# Engine knobs that cannot change what a model writes, each with the reason.
ENGINE_UNRECORDED = {
    "engine.openai.api_key_env": "names the variable that holds the key: authentication only",
    "engine.openai.timeout": "a request that times out is retried or stops the run; no answer is cut short",
    "engine.openai.max_retries": "a request that keeps failing stops the run; no answer is left out",
    "engine.openai.backoff": "the wait between retries",
    "engine.openai.concurrency": "requests in flight: answers come back in request order, and the server "
                                 "batches every client's requests whatever this client sends at once",
}


# ---------------------------------------------------------------------------------------------
# fingerprints


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    # str() of a set or an object is not stable across processes: refuse rather than guess
    raise TypeError(f"fingerprint settings: {type(value).__name__} is not plain data: {value!r}")


def row_digest(df: pl.DataFrame) -> str:
    """A digest of the rows' values in order, and of the schema: the same in every process."""
    h = hashlib.sha256(repr([(name, str(dtype)) for name, dtype in df.schema.items()]).encode())
    for part in df.iter_slices(10_000):  # bounded memory for large inputs
        h.update(part.write_ndjson().encode())
    return h.hexdigest()


def fingerprint(df: pl.DataFrame, settings: Mapping, *, chunk_size: int) -> str:
    """A digest of the input rows, the chunking and the settings that shape the output."""
    record = {
        "format": FORMAT,
        "chunking": {"chunk_size": chunk_size, "rows": df.height},
        "rows": row_digest(df),
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=_json_default).encode()).hexdigest()


def record(sections: Mapping[str, object], skip: Mapping[str, str] | set[str]) -> dict:
    """The sections' dataclass fields as plain data, minus the dotted paths in `skip` (and below them).

    Built by exclusion, so a field added to a config later is recorded unless someone allow-lists it."""

    def walk(value, path: str):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: walk(getattr(value, f.name), f"{path}.{f.name}")
                    for f in dataclasses.fields(value) if f"{path}.{f.name}" not in skip}
        return value

    return {name: walk(cfg, name) for name, cfg in sections.items()}


def _machine() -> dict:
    """What `auto` backend, device and dtype resolve to on this machine."""
    import torch

    from humpback.hardware import cpu_has_bf16

    return {"cuda": torch.cuda.is_available(), "vllm": importlib.util.find_spec("vllm") is not None,
            "cpu_bf16": cpu_has_bf16()}


def engine_settings(cfg: EngineConfig) -> dict:
    """Every `engine` knob but the allow-listed ones, and the machine facts `auto` depends on."""
    return {**record({"engine": cfg}, ENGINE_UNRECORDED), "machine": _machine()}


# ---------------------------------------------------------------------------------------------
# model identity


def _content_digest(d: Path) -> str:
    """Relative paths and bytes of every file but humpback_model.json (its meaning is recorded apart)."""
    h = hashlib.sha256()
    for p in sorted((p for p in d.rglob("*") if p.is_file() and p.name != META), key=lambda p: p.relative_to(d).as_posix()):
        file_hash = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                file_hash.update(block)
        h.update(f"{p.relative_to(d).as_posix()}\0{file_hash.hexdigest()}\n".encode())
    return h.hexdigest()


def _target_identity(target: str, seen: list[Path]) -> dict:
    """What a pointer or an adapter's base names: a local directory by content, else a hub id."""
    p = Path(target).expanduser()
    return _local_identity(p, seen) if p.exists() else {"hub": target}


def _local_identity(d: Path, seen: list[Path] | None = None) -> dict:
    # mirrors models.resolve: an adapter is its files over its base, a pointer is its target
    if not d.is_dir():
        raise InputError(d, "model directory not found (has its stage run?)")
    seen = [] if seen is None else seen
    follow_chain(d, seen)  # a pointer to itself, a cycle or a runaway chain: an error naming the file
    meta = read_meta(d)
    if (d / "adapter_config.json").is_file():
        if not meta.get("base"):
            raise InputError(d, f"LoRA adapter without {META} naming its base")
        return {"adapter": _content_digest(d), "base": _target_identity(meta["base"], seen)}
    if meta.get("kind") == "pointer":
        return {"pointer": _target_identity(meta["base"], seen)}
    return {"checkpoint": _content_digest(d)}


def model_identity(model_dir: str | Path | None, engine_cfg: EngineConfig) -> dict:
    """Which model an engine opened on (model_dir, engine_cfg) runs, by content, not by name or mtime.

    A local directory is identified by its files' bytes; a LoRA adapter also by its base's identity;
    a pointer by its target (a local directory's content, or the hub id). With the `openai` backend
    the endpoint and the served model name identify it, plus the local directory where there is one."""
    ident: dict = {}
    if engine_cfg.backend == "openai":  # `auto` never picks an endpoint
        served = engine_cfg.openai.model or (Path(model_dir).name if model_dir is not None else "")
        # the endpoint by its address without credentials: a key is authentication only (and this
        # record goes into the stored fingerprint), while another host or path is another endpoint
        ident["endpoint"] = {"base_url": redact_url(engine_cfg.openai.base_url.rstrip("/")), "model": served}
        if model_dir is None or not Path(model_dir).exists():
            return ident
    if model_dir is None:
        raise ConfigError("model_identity: no model directory and no endpoint")
    ident["local"] = _local_identity(Path(model_dir))
    return ident


# ---------------------------------------------------------------------------------------------
# the runner


def process_in_chunks(
    df: pl.DataFrame,
    out: str | Path,
    fn: Callable[[pl.DataFrame, int], pl.DataFrame],
    *,
    chunk_size: int,
    settings: Mapping | None = None,
    desc: str = "chunks",
) -> pl.DataFrame:
    """Apply `fn(chunk, chunk_index)` to each chunk of `df`, resumably; write and return the result."""
    if chunk_size < 1:
        raise ConfigError(f"chunk_size: must be at least 1, got {chunk_size}")
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    stamp = parts / "FINGERPRINT"
    fp = fingerprint(df, settings or {}, chunk_size=chunk_size)
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

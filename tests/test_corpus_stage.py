"""The whole corpus preparation: outputs, metrics, atomicity, the synthetic corpus and the stage script."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

from humpback.corpus import REJECTED_SCHEMA, SEGMENT_SCHEMA, CorpusConfig, SourceConfig, prepare_corpus
from humpback.corpus.synthetic import make_corpus
from humpback.errors import EmptyResultError, InputError

ROOT = Path(__file__).resolve().parents[1]
PROSE = ("The river carries fine silt down from the hills every spring, and the farmers along its banks plant "
         "their seeds only after the water has gone down again. ")


def para(seed: int, n_words: int = 120) -> str:
    """Prose-like text whose word shingles do not repeat (so one edited word is a small change)."""
    rng = random.Random(seed)
    words = PROSE.split()
    return " ".join(rng.choice(words) + str(rng.randint(0, 99)) for _ in range(n_words))


def write_dump(path: Path) -> Path:
    docs = [
        {"id": "d1", "url": "https://x/1", "text": f"# First\n\n{para(1)}\n\n## Second\n\n{para(2)}"},
        {"id": "d2", "url": "https://x/2", "text": f"## Copy\n\n{para(1)}"},  # exact copy of d1/First
        {"id": "d3", "text": "## Near\n\n" + para(2).replace(" ", " and ", 1)},  # near copy of d1/Second
        {"id": "d4", "text": f"## Newsletter\n\n{para(4)}"},
        {"id": "d5", "text": para(5)},  # headerless: allowed for table sources by default
    ]
    lines = [json.dumps(d) for d in docs] + ["{broken"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prepare_corpus_outputs_and_metrics(tmp_path):
    dump = write_dump(tmp_path / "dump.jsonl")
    cfg = CorpusConfig(sources=[SourceConfig(kind="table", path=str(dump))], min_chars=200, batch_size=2)
    timings: dict = {}
    metrics = prepare_corpus(cfg, tmp_path / "segments.parquet", tmp_path / "rejected.parquet", timings=timings)
    kept = pl.read_parquet(tmp_path / "segments.parquet")
    rejected = pl.read_parquet(tmp_path / "rejected.parquet")
    assert dict(kept.schema) == SEGMENT_SCHEMA and dict(rejected.schema) == REJECTED_SCHEMA
    assert kept.select("doc_id", "header").rows() == [("d1", "First"), ("d1", "Second"), ("d5", "")]
    assert kept["segment_id"].n_unique() == 3 and kept["n_chars"].to_list() == kept["text"].str.len_chars().to_list()
    assert dict(rejected.select("doc_id", "reason").iter_rows()) == {
        "d2": "exact_duplicate", "d3": "near_duplicate", "d4": "bad_header", "dump.jsonl:6": "malformed_json"}
    first_id = kept.filter(header="First")["segment_id"][0]
    assert rejected.filter(doc_id="d2")["detail"][0] == f"same text as {first_id}"
    assert metrics["rejected"] == {"bad_header": 1, "exact_duplicate": 1, "malformed_json": 1, "near_duplicate": 1}
    assert (metrics["docs_in"], metrics["docs_rejected"], metrics["docs_kept"]) == (6, 1, 2)
    assert (metrics["segments_in"], metrics["segments_kept"], metrics["segments_rejected"]) == (6, 3, 3)
    assert metrics["sources"] == [{"name": "table", "kind": "table", "path": str(dump), "docs": 6, "segments": 6,
                                   "kept": 3}]
    # the time taken goes to the caller, never into the metrics file (its bytes are in dvc.lock)
    assert timings["seconds"] >= 0 and timings["segments_per_second"] > 0
    assert not {"seconds", "cpu_seconds", "segments_per_second"} & set(metrics)


def test_output_is_the_same_for_any_batch_size(tmp_path):
    dump = write_dump(tmp_path / "dump.jsonl")
    frames = []
    for bs in (1, 1000):
        cfg = CorpusConfig(sources=[SourceConfig(kind="table", path=str(dump))], min_chars=200, batch_size=bs)
        prepare_corpus(cfg, tmp_path / f"s{bs}.parquet", tmp_path / f"r{bs}.parquet")
        frames.append((pl.read_parquet(tmp_path / f"s{bs}.parquet"), pl.read_parquet(tmp_path / f"r{bs}.parquet")))
    assert frames[0][0].equals(frames[1][0])
    assert frames[0][1].sort("segment_id").equals(frames[1][1].sort("segment_id"))


def test_empty_result_and_source_faults_leave_no_output(tmp_path):
    dump = write_dump(tmp_path / "dump.jsonl")
    seg, rej = tmp_path / "out" / "segments.parquet", tmp_path / "out" / "rejected.parquet"
    with pytest.raises(EmptyResultError, match="no segment survived"):
        prepare_corpus(CorpusConfig(sources=[SourceConfig(kind="table", path=str(dump))], min_chars=10_000), seg, rej)
    # a missing second source is found after the first was read: still nothing written
    bad = CorpusConfig(sources=[SourceConfig(kind="table", path=str(dump)),
                                SourceConfig(kind="html", path=str(tmp_path / "nope"))], min_chars=200)
    with pytest.raises(InputError, match="nope: file not found"):
        prepare_corpus(bad, seg, rej)
    assert not seg.exists() and not rej.exists()
    assert not list((tmp_path / "out").iterdir())  # no temporary files left either


def test_html_source_end_to_end(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_text(
        f"<html><head><link rel='canonical' href='https://site/page'></head><body><nav>Menu</nav>"
        f"<h2>About rivers</h2><p>{para(7)}</p><h2>Quick links</h2><p>{para(8)}</p></body></html>")
    (site / "nohead.html").write_text(f"<p>{para(9)}</p>")
    cfg = CorpusConfig(sources=[SourceConfig(kind="html", path=str(site), name="site")], min_chars=200)
    metrics = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    kept = pl.read_parquet(tmp_path / "s.parquet")
    assert kept.select("source", "doc_id", "url", "header").rows() == [("site", "page.html", "https://site/page",
                                                                        "About rivers")]
    assert metrics["rejected"] == {"bad_header": 1, "headerless_doc": 1}


def test_synthetic_corpus_has_the_junk_the_filters_remove(tmp_path):
    counts = make_corpus(tmp_path / "syn.jsonl", 300, seed=3)
    assert counts["docs"] == 300 and counts["exact_copies"] > 0 and counts["near_copies"] > 0 and counts["junk"] > 0
    again = make_corpus(tmp_path / "syn2.jsonl", 300, seed=3)
    assert again == counts and (tmp_path / "syn.jsonl").read_bytes() == (tmp_path / "syn2.jsonl").read_bytes()
    cfg = CorpusConfig(sources=[SourceConfig(kind="table", path=str(tmp_path / "syn.jsonl"))], batch_size=500)
    m = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    assert m["segments_in"] == counts["sections"] + counts["docs"]  # every document has a title section
    for reason in ("exact_duplicate", "near_duplicate", "bad_header", "header_caps", "too_short", "dup_lines"):
        assert m["rejected"].get(reason, 0) > 0, reason
    # most copies are caught (a copy of a section that was itself rejected counts under another reason)
    assert m["rejected"]["exact_duplicate"] + m["rejected"]["near_duplicate"] >= 0.8 * (
        counts["exact_copies"] + counts["near_copies"])
    assert m["segments_kept"] > 0.4 * counts["sections"]


def test_the_near_dedup_threshold_decides_what_is_a_near_copy(tmp_path):
    """The synthetic near copies span similarities: a stricter corpus.minhash_threshold keeps the
    looser ones (measured: 79 near duplicates at 0.5 and at 0.8, 49 at 0.95)."""
    make_corpus(tmp_path / "syn.jsonl", 300, seed=3)
    near = {}
    for t in (0.5, 0.95):
        cfg = CorpusConfig(sources=[SourceConfig(kind="table", path=str(tmp_path / "syn.jsonl"))], batch_size=500,
                           minhash_threshold=t)
        m = prepare_corpus(cfg, tmp_path / f"s{t}.parquet", tmp_path / f"r{t}.parquet")
        near[t] = m["rejected"]["near_duplicate"]
        assert m["segments_kept"] + sum(m["rejected"].values()) == m["segments_in"]
    assert 0 < near[0.95] < near[0.5]


def test_synthetic_html_site_goes_through_the_html_source(tmp_path):
    counts = make_corpus(tmp_path / "site", 120, seed=4, fmt="html")
    pages = sorted((tmp_path / "site").rglob("*.html"))
    assert len(pages) == 120 and pages[0].relative_to(tmp_path / "site").as_posix() == "0000/doc-0000000.html"
    cfg = CorpusConfig(sources=[SourceConfig(kind="html", path=str(tmp_path / "site"))])
    m = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    assert m["segments_in"] == counts["sections"] + counts["docs"]
    kept = pl.read_parquet(tmp_path / "s.parquet")
    assert kept.height > 0 and kept["url"].str.starts_with("https://example.org/").all()
    assert not kept["text"].str.contains("Copyright 2024|Home|dataLayer").any()  # footer, nav, script dropped
    assert m["rejected"]["exact_duplicate"] > 0 and m["rejected"]["near_duplicate"] > 0


def _run_stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # exactly the dvc.yaml command, run from the project root of a scratch copy
    return dvc_stage.run_subprocess("corpus", None, *args, cwd=cwd, timeout=300)


def test_stage_script_writes_outputs_and_reports_errors(tmp_path):
    write_dump(tmp_path / "dump.jsonl")
    (tmp_path / "params.yaml").write_text(
        "corpus:\n  sources:\n    - {kind: table, path: dump.jsonl}\n  min_chars: 200\n")
    done = _run_stage(tmp_path)
    assert done.returncode == 0, done.stderr
    assert pl.read_parquet(tmp_path / "data/prepared/segments.parquet").height == 3
    assert pl.read_parquet(tmp_path / "data/prepared/rejected.parquet").height == 4
    metrics = json.loads((tmp_path / "metrics/corpus.json").read_text())
    assert metrics["segments_kept"] == 3 and metrics["rejected"]["malformed_json"] == 1

    (tmp_path / "bad.yaml").write_text("corpus:\n  sources:\n    - {kind: table, path: missing.jsonl}\n")
    failed = _run_stage(tmp_path, "--params", "bad.yaml", "--out", "o.parquet")
    assert failed.returncode == 2
    assert failed.stderr.strip() == "error: missing.jsonl: file not found"
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.slow
def test_throughput_on_100k_synthetic_segments(tmp_path):
    counts = make_corpus(tmp_path / "big.jsonl", 17_000, seed=0)
    assert counts["sections"] + counts["docs"] >= 100_000
    cfg = CorpusConfig(sources=[SourceConfig(kind="table", path=str(tmp_path / "big.jsonl"))])
    start = time.process_time()
    m = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    per_cpu_second = m["segments_in"] / (time.process_time() - start)
    assert per_cpu_second >= 2000, per_cpu_second


def test_a_document_that_breaks_segmentation_is_rejected_not_fatal(tmp_path, monkeypatch):
    import humpback.corpus.pipeline as pipeline

    real = pipeline.segment_markdown

    def fragile(text: str):
        if "Newsletter" in text:
            raise ValueError("parser gave up")
        return real(text)

    monkeypatch.setattr(pipeline, "segment_markdown", fragile)
    dump = write_dump(tmp_path / "dump.jsonl")
    cfg = CorpusConfig(sources=[SourceConfig(kind="table", path=str(dump))], min_chars=200)
    metrics = prepare_corpus(cfg, tmp_path / "s.parquet", tmp_path / "r.parquet")
    assert metrics["rejected"]["unparseable"] == 1 and "bad_header" not in metrics["rejected"]
    row = pl.read_parquet(tmp_path / "r.parquet").filter(reason="unparseable").row(0, named=True)
    assert (row["doc_id"], row["detail"]) == ("d4", "ValueError: parser gave up")


def test_params_yaml_corpus_section_loads():
    from humpback.config import load_section

    cfg = load_section("corpus", ROOT / "params.yaml")
    assert isinstance(cfg, CorpusConfig) and [s.kind for s in cfg.sources] == ["packages"]
    assert 0 < cfg.min_chars < cfg.max_chars and "newsletter" in cfg.bad_headers

"""bench/run.py: rows beside their baselines, targets checked, a failing bench recorded, not fatal."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_run", None)


def test_failing_bench_is_recorded_and_the_others_run(bench_run, monkeypatch, tmp_path):
    def broken(ctx):
        raise RuntimeError("out of memory")

    def fine(ctx):
        return [bench_run.Row("fine", "speed", 30.0, "tok/s", 10.0, "slow way", 3.0, ">= 3x", True)], {"x": 1}

    monkeypatch.setitem(bench_run.BENCHES, "broken", broken)
    monkeypatch.setitem(bench_run.BENCHES, "fine", fine)
    out = tmp_path / "bench.json"
    report = bench_run.main(["--only", "broken", "fine", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["benches"]["broken"]["ok"] is False
    assert "RuntimeError: out of memory" in report["benches"]["broken"]["error"]
    fine_status = report["benches"]["fine"]
    assert fine_status["ok"] is True and fine_status["results"] == {"x": 1} and fine_status["seconds"] >= 0
    assert [(r["bench"], r["measure"]) for r in report["rows"]] == [("broken", "error"), ("fine", "speed")]
    m = report["machine"]
    assert m["cores"] >= 1 and m["torch"] and m["cpu"]
    assert "| fine | speed | 30.0 tok/s | 10.0 (slow way) | 3 | >= 3x | yes |" in bench_run.markdown(report)


def test_corpus_bench_measures_two_sizes_in_their_own_processes(bench_run, tmp_path):
    out = tmp_path / "bench.json"
    report = bench_run.main(["--quick", "--only", "corpus", "vllm", "--out", str(out)])
    speed, rss = report["rows"][:2]
    results = report["benches"]["corpus"]["results"]
    small, large = (results[k] for k in sorted((k for k in results if not k.startswith("_")), key=int))
    assert large["segments_in"] > 3 * small["segments_in"] > 0
    assert speed["value"] == large["segments_per_cpu_second"] > 0
    assert speed["baseline"] == small["segments_per_cpu_second"]
    assert speed["holds"] == (speed["value"] >= 2000)
    # peak RSS comes from each child; a Python process with polars and pyarrow loaded is well over 50 MB
    assert rss["value"] == large["peak_rss_mb"] > 50 and rss["baseline"] == small["peak_rss_mb"] > 50
    assert rss["ratio"] == pytest.approx(large["peak_rss_mb"] / small["peak_rss_mb"], abs=0.01)
    vllm = report["rows"][-1]
    assert vllm["bench"] == "vllm"
    if report["machine"]["gpu"] is None:
        assert vllm["value"] is None and vllm["note"] == "skipped: no GPU" and vllm["holds"] is None


def test_merge_replaces_only_the_benches_run_again(bench_run):
    def row(bench, value):
        return {"bench": bench, "measure": "m", "value": value}

    machine = {"load_average_at_start": [1.0]}
    old = {"machine": machine, "benches": {"corpus": {"ok": True}, "training": {"ok": True}},
           "rows": [row("corpus", 1), row("training", 2)]}
    new = {"machine": {"load_average_at_start": [3.0]}, "quick": False,
           "benches": {"generation": {"ok": True}, "corpus": {"ok": False}}, "rows": [row("corpus", 9), row("generation", 5)]}
    merged = bench_run.merge(old, new)
    assert list(merged["benches"]) == ["corpus", "generation", "training"]
    assert merged["benches"]["corpus"] == {"ok": False}
    assert [(r["bench"], r["value"]) for r in merged["rows"]] == [("corpus", 9), ("generation", 5), ("training", 2)]
    assert merged["machine"]["load_average_at_start"] == [1.0] and merged["merged"] == ["corpus", "generation"]

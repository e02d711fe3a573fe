import json
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

from humpback.errors import InputError
from humpback.evaluation.curation_quality import load_labels, precision_recall, selection_quality
from humpback.evaluation.report import ReportPaths, build_report

ROOT = Path(__file__).resolve().parents[1]


def _paths(root: Path) -> ReportPaths:
    return ReportPaths(eval_metrics=root / "metrics/eval", curation_metrics=root / "metrics/curation",
                       seed=root / "data/prepared/seed.parquet", curated=root / "data/curated",
                       plots=root / "metrics/plots", report=root / "metrics/report",
                       curation_quality=root / "metrics/curation_quality.json")


def make_inputs(root: Path, models=("base", "m0", "it1", "it2"), iterations=("it1", "it2")):
    for i, m in enumerate(models):
        p = root / "metrics/eval" / f"{m}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"win_rate": 50 + 8 * i, "lc_win_rate": 50 + 6 * i, "standard_error": 4.0,
                                 "discrete_win_rate": 50 + 8 * i, "avg_length": 300 + 40 * i, "n_total": 40,
                                 "reference": "base", "judge": "models/base"}))
    (root / "data/prepared").mkdir(parents=True)
    pl.DataFrame({"instruction": ["a" * 50, "b" * 70], "output": ["x" * 400, "y" * 600]}).write_parquet(
        root / "data/prepared/seed.parquet")
    for k, it in enumerate(iterations):
        p = root / "metrics/curation" / f"{it}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"histogram": {"1": 10, "2": 5, "3": 8, "4": 12 - k, "5": 4 + k, "unparsed": 1},
                                 "kept": 16, "threshold": 4.0}))
        (root / "data/curated").mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"instruction": ["q" * 30] * 3, "output": ["o" * (800 + 100 * k)] * 3,
                      "segment_id": [f"s{j}" for j in range(k, k + 3)], "score": [5.0, 4.0, 4.0]}).write_parquet(
            root / "data/curated" / f"{it}.parquet")


def test_report_writes_plots_png_and_html(tmp_path):
    make_inputs(tmp_path)
    paths = _paths(tmp_path)
    data = build_report(["base", "m0", "it1", "it2"], ["it1", "it2"], paths)
    wr = json.loads((tmp_path / "metrics/plots/win_rate.json").read_text())
    assert [r["model"] for r in wr] == ["base", "m0", "it1", "it2"] and wr[3]["win_rate"] == 74
    hist = json.loads((tmp_path / "metrics/plots/curation/it2.json").read_text())
    assert hist[4] == {"score": "5", "count": 5} and hist[5] == {"score": "unparsed", "count": 1}
    kept = json.loads((tmp_path / "metrics/plots/kept.json").read_text())
    assert kept[0] == {"iteration": "it1", "kept": 16, "threshold": 4.0, "candidates": 40}
    lengths = json.loads((tmp_path / "metrics/plots/lengths.json").read_text())
    assert lengths[0]["dataset"] == "seed" and lengths[0]["output_mean"] == 500
    assert lengths[2]["output_mean"] == 900 and lengths[2]["n"] == 3
    png = tmp_path / "metrics/report/report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    page = (tmp_path / "metrics/report/index.html").read_text()
    assert 'src="report.png"' in page and "<td>it2</td>" in page and "not configured" in page
    assert json.loads(paths.curation_quality.read_text()) == {"labels": None, "iterations": {}}
    assert data.quality["labels"] is None


def test_report_requires_configured_inputs(tmp_path):
    make_inputs(tmp_path, models=("base", "m0"), iterations=("it1",))
    paths = _paths(tmp_path)
    build_report(["base", "m0"], ["it1"], paths)  # only what is configured is needed
    with pytest.raises(InputError, match="it1.json: file not found"):
        build_report(["base", "m0", "it1"], ["it1"], paths)
    with pytest.raises(InputError, match="curation/it2.json: file not found"):
        build_report(["base"], ["it1", "it2"], paths)


def test_report_stage_with_curation_labels(tmp_path, monkeypatch):
    make_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    pl.DataFrame({"segment_id": ["s0", "s1", "s2", "s3", "s9"], "score": [5, 2, 5, 5, 1]}).write_parquet("labels.parquet")
    Path("params.yaml").write_text("iterations:\n  it1: {prev: m0}\n  it2: {prev: it1}\n"
                                   "eval:\n  curation_labels: labels.parquet\n")
    dvc_stage.run("report")
    q = json.loads(Path("metrics/curation_quality.json").read_text())
    # it1 keeps s0 s1 s2: 2 of 3 good; good = s0 s2 s3 -> recall 2/3
    assert q["iterations"]["it1"]["precision"] == pytest.approx(2 / 3)
    assert q["iterations"]["it1"]["recall"] == pytest.approx(2 / 3)
    # it2 keeps s1 s2 s3: good s2 s3
    assert q["iterations"]["it2"]["true_positives"] == 2
    assert Path("metrics/report/report.png").is_file()


def test_precision_recall_by_hand():
    labels = {"a": True, "b": False, "c": True, "d": False, "e": True}
    m = precision_recall(["a", "b", "zz"], labels)  # zz is not labelled: ignored
    assert (m["precision"], m["recall"], m["true_positives"], m["n_selected_labelled"]) == (0.5, 1 / 3, 1, 2)
    assert m["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert precision_recall([], labels)["precision"] is None
    assert precision_recall(["b"], labels)["f1"] == 0.0


def test_labels_from_bool_int_or_score(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text('{"segment_id": "a", "label": true}\n{"segment_id": "b", "label": false}\n')
    assert load_labels(p) == {"a": True, "b": False}
    p.write_text('{"segment_id": 1, "label": 1}\n{"segment_id": 2, "label": 0}\n')
    assert load_labels(p) == {"1": True, "2": False}
    p.write_text('{"segment_id": "a", "score": 4}\n{"segment_id": "b", "score": 5}\n')
    assert load_labels(p) == {"a": False, "b": True}
    assert load_labels(p, threshold=4) == {"a": True, "b": True}
    p.write_text('{"segment_id": "a", "label": "maybe"}\n')
    with pytest.raises(InputError, match="record 0: 'label' must be"):
        load_labels(p)
    p.write_text('{"segment_id": "a", "verdict": 1}\n')
    with pytest.raises(InputError, match="needs a 'label' or a 'score' column"):
        load_labels(p)
    p.write_text('{"segment_id": "a", "score": 1}\n{"segment_id": "a", "score": 2}\n')
    with pytest.raises(InputError, match="duplicate segment_id"):
        load_labels(p)


def test_selection_quality_needs_id_column(tmp_path):
    p = tmp_path / "c.parquet"
    pl.DataFrame({"instruction": ["x"], "output": ["y"]}).write_parquet(p)
    with pytest.raises(InputError, match="missing column 'segment_id'"):
        selection_quality(p, {"a": True})
    empty = tmp_path / "e.parquet"
    pl.DataFrame({"segment_id": []}, schema={"segment_id": pl.String}).write_parquet(empty)
    assert selection_quality(empty, {"a": True})["recall"] == 0

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
                                 "n": 40, "kept": 16, "threshold": 4.0, "curate": True, "max_examples": 0,
                                 "top_share": 0, "sample": 0, "sample_seed": 0}))
        (root / "metrics/scores").mkdir(parents=True, exist_ok=True)
        (root / "metrics/scores" / f"{it}.json").write_text(json.dumps({"mean": 3.25 + k, "n": 40}))
        (root / "data/curated").mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"instruction": ["q" * 30] * 3, "output": ["o" * (800 + 100 * k)] * 3,
                      "segment_id": [f"s{j}" for j in range(k, k + 3)], "score": [5.0, 4.0, 4.0]}).write_parquet(
            root / "data/curated" / f"{it}.parquet")
        # the scored candidates those settings keep exactly the curated rows of (the candidate browser checks)
        (root / "data/scores").mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"segment_id": [f"s{j}" for j in range(5)], "instruction": ["q" * 30] * 5, "output": ["o" * 80] * 5,
                      "score": [[5.0, 4.0, 4.0, 2.0, None], [3.0, 5.0, 4.0, 4.0, 1.0]][k]}).write_parquet(
            root / "data/scores" / f"{it}.parquet")
    (root / "data/augmented").mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"segment_id": [f"s{j}" for j in range(5)], "instruction": ["q" * 30] * 5,
                  "output": ["o" * 80] * 5}).write_parquet(root / "data/augmented/candidates.parquet")
    pl.DataFrame({"segment_id": ["r0"], "instruction": ["Response:"], "raw_instruction": ["Response:"],
                  "output": ["o" * 80], "reason": ["too_short"], "detail": [None]}).write_parquet(
        root / "data/augmented/rejected.parquet")


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
    assert "candidates.html" not in page and not (tmp_path / "metrics/report/candidates.html").exists()
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
    # the candidate browser, linked from the report: s4 unparsed in it1, r0 rejected at augment
    assert 'href="candidates.html"' in Path("metrics/report/index.html").read_text()
    browser = Path("metrics/report/candidates.html").read_text()
    assert '"id":"s4"' in browser and '"unparsed"' in browser and '"aug":["too_short",null]' in browser
    # the stage writes the headline rows dvc metrics show displays: each model's, with its iteration's counts
    head = {p.stem: json.loads(p.read_text()) for p in Path("metrics/headline").iterdir()}
    assert set(head) == {"base", "m0", "it1", "it2", "judge"}
    assert head["it2"] == {"win": 74.0, "pairs": 40, "kept": 16, "score": 4.25}


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


def _check(trustworthy: bool) -> dict:
    disc, oc = (0.92, 0.85) if trustworthy else (0.5, 0.0)
    kinds = {k: {"discrimination": disc, "order_consistency": oc, "first_slot_rate": 0.5, "n": 40}
             for k in ("cut", "shuffle", "other_prompt")}
    return {"discrimination": disc, "order_consistency": oc, "first_slot_rate": 0.5 if trustworthy else 1.0,
            "n": 120, "trustworthy": trustworthy, "thresholds": {"discrimination": 0.6, "order_consistency": 0.6},
            "by_degradation": kinds}


def _write(root: Path, name: str, data) -> None:
    (root / "metrics/eval" / name).parent.mkdir(parents=True, exist_ok=True)
    (root / "metrics/eval" / name).write_text(json.dumps(data))


def test_report_warns_when_the_judge_failed_its_check(tmp_path):
    make_inputs(tmp_path)
    paths = _paths(tmp_path)
    _write(tmp_path, "judge_check.json", _check(False))
    build_report(["base", "m0", "it1", "it2"], ["it1", "it2"], paths)
    page = (tmp_path / "metrics/report/index.html").read_text()
    warning = page.index('class="warning"')
    assert warning < page.index("<h2>Win rates</h2>") and warning < page.index('src="report.png"')
    assert "not trustworthy" in page and "intact answer in 0.50 of 120 pairs (needs 0.60)" in page
    assert "swapped in 0.00 (needs 0.60)" in page
    assert "<td>other_prompt</td>" in page  # the per-degradation table

    _write(tmp_path, "judge_check.json", _check(True))
    build_report(["base", "m0", "it1", "it2"], ["it1", "it2"], paths)
    page = (tmp_path / "metrics/report/index.html").read_text()
    assert 'class="warning"' not in page and "not trustworthy" not in page and "<td>0.92</td>" in page

    (tmp_path / "metrics/eval/judge_check.json").unlink()  # never checked: said so, above the win rates
    build_report(["base", "m0", "it1", "it2"], ["it1", "it2"], paths)
    assert "The judge was not checked" in (tmp_path / "metrics/report/index.html").read_text()


def test_report_paired_heldout_and_length_controlled(tmp_path):
    make_inputs(tmp_path)
    paths = _paths(tmp_path)
    for i, m in enumerate(("base", "m0", "it1", "it2")):
        p = tmp_path / "metrics/eval" / f"{m}.json"
        data = json.loads(p.read_text())
        data.pop("lc_win_rate")
        if m != "base":  # a model without the key is left out of the plot, not an error
            data["heldout_nll"] = 3.0 - 0.25 * i
        p.write_text(json.dumps(data))
    _write(tmp_path, "length_controlled.json", {"formula": "f", "reference": "base", "models": {
        "base": {"lc_win_rate": 50.0, "win_rate": 50.0}, "m0": {"lc_win_rate": 55.5, "win_rate": 58.0},
        "it1": {"lc_win_rate": 61.0, "win_rate": 66.0}, "it2": {"lc_win_rate": 63.0, "win_rate": 74.0}}})
    comp = lambda a, b, w, lo, hi: {"a": a, "b": b, "win_rate": w, "ci_low": lo, "ci_high": hi, "n": 40,  # noqa: E731
                                    "excludes_50": lo > 50 or hi < 50}
    _write(tmp_path, "paired.json", {"comparisons": {
        "m0_vs_base": comp("m0", "base", 70.0, 58.0, 81.0), "it1_vs_m0": comp("it1", "m0", 55.0, 44.0, 66.0),
        "it2_vs_it1": comp("it2", "it1", 52.0, 41.0, 63.0)}})
    _write(tmp_path, "judge_check.json", _check(True))
    _write(tmp_path, "backward/base.json", {"heldout_nll": 2.6327, "heldout_tokens": 267, "heldout_n": 16})
    _write(tmp_path, "backward/backward.json", {"heldout_nll": 1.8133, "heldout_tokens": 267, "heldout_n": 16})
    data = build_report(["base", "m0", "it1", "it2"], ["it1", "it2"], paths)
    assert data.backward == [{"model": "base", "heldout_nll": 2.6327, "heldout_tokens": 267, "heldout_n": 16},
                             {"model": "backward", "heldout_nll": 1.8133, "heldout_tokens": 267, "heldout_n": 16}]
    backward_html = (tmp_path / "metrics/report/index.html").read_text().split("held-out instructions</h2>")[1]
    assert "<td>backward</td><td>1.81</td><td>267</td><td>16</td>" in backward_html.split("</table>")[0]
    wr = json.loads((tmp_path / "metrics/plots/win_rate.json").read_text())
    assert [r["lc_win_rate"] for r in wr] == [50.0, 55.5, 61.0, 63.0]  # from the joint fit's file
    paired = json.loads((tmp_path / "metrics/plots/paired.json").read_text())
    assert [r["comparison"] for r in paired] == ["m0_vs_base", "it1_vs_m0", "it2_vs_it1"]
    assert paired[0] == {"comparison": "m0_vs_base", "a": "m0", "b": "base", "win_rate": 70.0, "ci_low": 58.0,
                         "ci_high": 81.0, "n": 40, "excludes_50": True}
    nll = json.loads((tmp_path / "metrics/plots/heldout_nll.json").read_text())
    assert nll == [{"model": "m0", "heldout_nll": 2.75}, {"model": "it1", "heldout_nll": 2.5},
                   {"model": "it2", "heldout_nll": 2.25}]
    page = (tmp_path / "metrics/report/index.html").read_text()
    assert "<td>it1_vs_m0</td>" in page and "<td>55.50</td>" in page and "<td>2.25</td>" in page
    assert data.paired[1]["excludes_50"] is False
    # only configured models' comparisons; a broken file is named
    build_report(["base", "m0"], ["it1", "it2"], paths)
    assert [r["comparison"] for r in json.loads((tmp_path / "metrics/plots/paired.json").read_text())] == ["m0_vs_base"]
    _write(tmp_path, "paired.json", {"comparisons": {"m0_vs_base": {"a": "m0"}}})
    with pytest.raises(InputError, match=r"paired.json: comparisons.m0_vs_base: expected keys"):
        build_report(["base", "m0"], ["it1", "it2"], paths)


def test_report_without_the_new_files(tmp_path):
    make_inputs(tmp_path)
    data = build_report(["base", "m0", "it1", "it2"], ["it1", "it2"], _paths(tmp_path))
    assert data.paired == [] and data.heldout == [] and data.judge_check is None
    assert [r["lc_win_rate"] for r in data.win_rates] == [None] * 4  # never the per-model length-only fit
    assert json.loads((tmp_path / "metrics/plots/paired.json").read_text()) == []
    page = (tmp_path / "metrics/report/index.html").read_text()
    assert "no comparisons" in page and "<h2>Judge check</h2><p>not run</p>" in page
    assert data.backward == [] and "not measured (stage heldout_backward)" in page


def test_the_backward_models_instruction_openings_are_counted_and_shown(tmp_path):
    from humpback.evaluation.report import collect, instruction_openings, render_html

    make_inputs(tmp_path)
    texts = ["Write a Python function that sums.", "Write a  Python\nscript.", "Write a Python", "What is the GIL?",
             "What is the\tsea?", "Hi", "How can I help?"]
    candidates = tmp_path / "data/augmented/candidates.parquet"
    pl.DataFrame({"segment_id": [f"s{j}" for j in range(len(texts))], "instruction": texts,
                  "output": ["o" * 80] * len(texts)}).write_parquet(candidates)
    got = instruction_openings(candidates, top=2)
    # whitespace of any kind splits words; a shorter instruction is its own opening
    assert got == {"instructions": 7, "distinct_openings": 4,
                   "top": [{"opening": "Write a Python", "count": 3}, {"opening": "What is the", "count": 2}]}
    paths = _paths(tmp_path)
    paths.candidates = candidates
    data = collect(["base", "m0", "it1", "it2"], ["it1", "it2"], paths)
    assert data.openings["distinct_openings"] == 4
    render_html(data, tmp_path / "index.html", "report.png")
    page = (tmp_path / "index.html").read_text()
    assert "kept: 7, with 4 distinct 3-word openings" in page and "<td>Write a Python</td><td>3</td>" in page

import json
import math

import numpy as np
import pytest

from humpback.evaluation.scaling import collect_points, fit_scaling, main


def test_fit_recovers_known_curve():
    n = [100, 200, 400, 800, 1600]
    w = [6.95 * math.log(x) + 12.0 for x in n]
    fit = fit_scaling(n, w)
    assert fit["alpha"] == pytest.approx(6.95) and fit["C"] == pytest.approx(12.0) and fit["r2"] == pytest.approx(1)


def test_fit_with_noise_has_r2_below_one():
    rng = np.random.default_rng(0)
    n = np.repeat([100, 300, 1000, 3000], 3)
    w = 4.43 * np.log(n) + 20 + rng.normal(0, 1.5, n.size)
    fit = fit_scaling(n, w)
    assert fit["alpha"] == pytest.approx(4.43, abs=1.0) and 0.8 < fit["r2"] < 1


@pytest.mark.parametrize(("n", "w"), [([100, 100], [50, 60]), ([0, 10], [1, 2]), ([10], [1]), ([10, 20], [1])])
def test_fit_rejects_bad_points(n, w):
    with pytest.raises(ValueError):
        fit_scaling(n, w)


def rev(rev_id, name, n, w=None, metric_file="metrics/headline/it2.json"):
    metrics = {metric_file: {"data": {"win": w}}} if w is not None else {
        metric_file: {"error": {"type": "FileNotFoundError", "msg": "missing"}}}
    return {"rev": rev_id, "name": name, "error": None, "experiments": None,
            "data": {"rev": rev_id, "params": {"params.yaml": {"data": {"iterations": {
                "it1": {"prev": "m0"}, "it2": {"prev": "it1", **({"select": {"sample": n}} if n else {})}}}}},
                     "metrics": metrics}}


def exp_show():
    """The shape `dvc exp show --json` prints (DVC 3): workspace, baseline, experiments under it."""
    baseline = rev("abc", "main", 0, 60.0)  # no sample: every curated pair, not a point
    baseline["experiments"] = [
        {"revs": [rev("e1", "scale-100", 100, 40.0)], "executor": None, "name": "scale-100"},
        {"revs": [rev("e2", "scale-400", 400, 49.6)], "executor": None, "name": "scale-400"},
        {"revs": [rev("e3", "scale-800", 800, None)], "executor": {"state": "failed"}, "name": "scale-800"},
    ]
    return [rev("workspace", None, 400, 49.6), baseline]


def test_collect_points_from_exp_show():
    pts = collect_points(exp_show())
    assert [(p["name"], p["N"], p["win_rate"]) for p in pts] == [("scale-100", 100, 40.0), ("scale-400", 400, 49.6)]
    assert len(collect_points(exp_show(), include_workspace=True)) == 3
    assert collect_points(exp_show(), metric_file="metrics/headline/it1.json") == []


def test_cli_collect_then_fit(tmp_path, capsys):
    src = tmp_path / "exps.json"
    src.write_text(json.dumps(exp_show()))
    main(["collect", str(src), "--out", str(tmp_path / "points.json")])
    main(["fit", str(tmp_path / "points.json"), "--out", str(tmp_path / "fit.json")])
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["alpha"] == pytest.approx(9.6 / math.log(4)) and fit["n_points"] == 2
    assert "ln(N)" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    p = tmp_path / "points.json"
    p.write_text(json.dumps([{"N": 100, "win_rate": 50}]))
    with pytest.raises(SystemExit) as e:
        main(["fit", str(p)])
    assert e.value.code == 2 and "two or more distinct N" in capsys.readouterr().err
    (tmp_path / "exps.json").write_text("[]")
    with pytest.raises(SystemExit):
        main(["collect", str(tmp_path / "exps.json"), "--out", str(tmp_path / "x.json")])
    assert "no rev has both" in capsys.readouterr().err

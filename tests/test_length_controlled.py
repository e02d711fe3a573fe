"""The joint length-controlled GLM (AlpacaEval 2 form): length-gamed wins shrink, real wins stay,
the reference is 50, mirrored inputs mirror, the instruction difficulty is shared; the stage."""

from __future__ import annotations

import json
from pathlib import Path

import dvc_stage
import numpy as np
import polars as pl
import pytest

from humpback.evaluation.length_controlled import FORMULA, fit_length_controlled
from humpback.io import write_parquet

X = 60
IDS = [f"p{i:02d}" for i in range(X)]
RNG = np.random.default_rng(7)
REF = RNG.integers(300, 600, X).astype(float)


def frame(pref, length, ref=REF, ids=IDS) -> pl.DataFrame:
    return pl.DataFrame({"prompt_id": ids, "preference": np.asarray(pref, float), "length": np.asarray(length, float),
                         "reference_length": np.asarray(ref, float)})


def reference() -> pl.DataFrame:
    return frame(np.full(X, 1.5), REF)  # the reference judged against itself: ties, equal lengths


def gamer() -> pl.DataFrame:
    """Mostly longer than the reference, and the judge prefers it by length alone: P(win) =
    sigmoid(4 tanh(d / sd)), which is 1/2 at equal lengths (its true length-controlled rate is 50)."""
    rng = np.random.default_rng(3)
    d = np.maximum(rng.normal(150, 200, X), 1 - REF)  # lengths stay positive
    win = rng.random(X) < 1 / (1 + np.exp(-4 * np.tanh(d / d.std(ddof=1))))
    return frame(np.where(win, 2.0, 1.0), REF + d)


def strong() -> pl.DataFrame:
    """Wins 80% of the prompts whatever the lengths."""
    # its own generator: the same lengths whichever test asks first
    lengths = REF + np.random.default_rng(11).normal(0, 200, X)
    return frame(np.where(np.arange(X) % 5 != 0, 2.0, 1.0), np.maximum(lengths, 1))


def test_length_only_wins_shrink_towards_50():
    m = fit_length_controlled({"base": reference(), "gamer": gamer()})["models"]["gamer"]
    assert m["win_rate"] == pytest.approx(78.3, abs=0.1)
    assert m["lc_win_rate"] < m["win_rate"] - 15 and m["length_coef"] > 2


def test_wins_regardless_of_length_keep_their_rate():
    m = fit_length_controlled({"base": reference(), "strong": strong()})["models"]["strong"]
    assert m["win_rate"] == pytest.approx(80)
    assert m["lc_win_rate"] == pytest.approx(m["win_rate"], abs=4) and abs(m["length_coef"]) < 1


def test_the_reference_itself_gets_50():
    fit = fit_length_controlled({"base": reference(), "gamer": gamer(), "strong": strong()})
    base = fit["models"]["base"]
    assert base["lc_win_rate"] == pytest.approx(50, abs=0.5) and base["win_rate"] == 50
    assert abs(base["model_coef"]) < 0.1 and base["length_coef"] == pytest.approx(0, abs=1e-6)
    alone = fit_length_controlled({"base": reference()})["models"]["base"]
    assert alone["lc_win_rate"] == pytest.approx(50, abs=1e-6)


def test_mirrored_inputs_give_mirrored_outputs():
    g = gamer()
    mirror = frame(3.0 - g["preference"].to_numpy(), REF, ref=g["length"].to_numpy())
    a = fit_length_controlled({"a": g})["models"]["a"]
    b = fit_length_controlled({"b": mirror})["models"]["b"]
    assert a["lc_win_rate"] + b["lc_win_rate"] == pytest.approx(100, abs=1e-3)
    assert a["length_coef"] == pytest.approx(b["length_coef"], abs=1e-3)  # longer-than-reference, either side
    both = fit_length_controlled({"a": g, "b": mirror})["models"]
    assert both["a"]["lc_win_rate"] + both["b"]["lc_win_rate"] == pytest.approx(100, abs=1e-3)


def test_the_instruction_difficulty_is_shared():
    """Model a wins the first half of the prompts and loses the second, at equal lengths; model b
    ties everywhere. One difficulty per prompt: b's length-controlled preferences follow a's pattern
    (the prompts a wins are easy), which separate per-model terms could not give."""
    half = np.arange(X) < X // 2
    a = frame(np.where(half, 2.0, 1.0), REF)
    b = frame(np.full(X, 1.5), REF)
    fit = fit_length_controlled({"a": a, "b": b})
    assert fit["instructions"] == X and len(fit["difficulty"]) == X
    psi = np.array([fit["difficulty"][p] for p in IDS])
    assert psi[half].min() > psi[~half].max()
    prefs = fit["models"]["b"]["lc_preferences"]
    easy, hard = [prefs[p] for p in IDS[: X // 2]], [prefs[p] for p in IDS[X // 2:]]
    assert min(easy) > max(hard) and np.mean(easy) > np.mean(hard) + 0.2
    assert fit["models"]["b"]["lc_win_rate"] == pytest.approx(50, abs=1)


def test_models_on_different_prompt_sets_and_unanimous_wins():
    fit = fit_length_controlled({"base": reference(), "few": frame([2.0] * 10, REF[:10] + 5, REF[:10], IDS[:10])})
    assert fit["models"]["few"]["n"] == 10 and fit["models"]["few"]["lc_win_rate"] > 70
    only = fit_length_controlled({"all": frame(np.full(X, 2.0), REF + 10)})["models"]["all"]
    assert only["lc_win_rate"] == only["win_rate"] == 100


# --- the stage ----------------------------------------------------------------------------------

def project(tmp_path: Path, monkeypatch, models: dict[str, pl.DataFrame]) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(f"eval:\n  models: [{', '.join(models)}]\n  lc_regularization: 10.0\n")
    for name, df in models.items():
        write_parquet(df.with_columns(pl.lit("x").alias("category")), tmp_path / f"data/eval/judgements/{name}.parquet")
    return tmp_path


def test_stage_writes_the_contract(tmp_path, monkeypatch):
    ws = project(tmp_path, monkeypatch, {"base": reference(), "m0": gamer(), "it1": strong()})
    dvc_stage.run("length_controlled")
    out = json.loads((ws / "metrics/eval/length_controlled.json").read_text())
    assert out["formula"] == FORMULA and out["reference"] == "base" and out["regularization"] == 10.0
    assert list(out["models"]) == ["base", "m0", "it1"] and out["instructions"] == X
    for m in out["models"].values():
        assert {"lc_win_rate", "win_rate", "length_coef", "model_coef", "n"} <= set(m) and m["n"] == X
    assert out["models"]["m0"]["lc_win_rate"] < out["models"]["m0"]["win_rate"] - 15


def test_stage_bad_preference_names_the_file_and_row(tmp_path, monkeypatch, capsys):
    bad = reference().with_columns(pl.Series("preference", [1.5] * (X - 1) + [7.0]))
    project(tmp_path, monkeypatch, {"base": bad})
    with pytest.raises(SystemExit):
        dvc_stage.run("length_controlled")
    assert ("data/eval/judgements/base.parquet, record 59: preference must be a number in [1, 2], got 7.0"
            in capsys.readouterr().err)


def test_stage_missing_model_names_the_file(tmp_path, monkeypatch, capsys):
    project(tmp_path, monkeypatch, {"base": reference()})
    (tmp_path / "params.yaml").write_text("eval:\n  models: [base, it1]\n")
    with pytest.raises(SystemExit):
        dvc_stage.run("length_controlled")
    assert "data/eval/judgements/it1.parquet: file not found (has judge@it1 run?)" in capsys.readouterr().err


def _pinned_frame(seed: int) -> pl.DataFrame:
    ids = [f"q{i}" for i in range(12)]
    ref = np.random.default_rng(21).integers(200, 500, 12).astype(float)
    r = np.random.default_rng(seed)
    return pl.DataFrame({"prompt_id": ids, "preference": r.uniform(1, 2, 12).round(2),
                         "length": (ref + r.normal(50, 120, 12)).round(), "reference_length": ref})


def test_the_joint_fit_is_pinned():
    """The recorded LC rates stay what they are: no intercept, C = 10 by default, fitted to the optimum
    (Newton steps to tol 1e-10), the soft preferences as weights."""
    out = fit_length_controlled({"a": _pinned_frame(1), "b": _pinned_frame(2)})
    got = [(m["lc_win_rate"], m["model_coef"], m["length_coef"]) for m in out["models"].values()]
    # the optimum itself, the same on every CPU to ~1e-12 (newton-cg agrees to 1e-14); lbfgs stopped
    # 1e-5 away from it, at a point that moved with the BLAS
    assert got == [pytest.approx((48.0509898455, -0.0793963381, 0.6755865044), abs=1e-8),
                   pytest.approx((31.3497935566, -0.8246834260, 0.7830396173), abs=1e-8)]
    assert out["difficulty"]["q0"] == pytest.approx(0.0572239905, abs=1e-8)
    assert fit_length_controlled({"a": _pinned_frame(1), "b": _pinned_frame(2)}, regularization=10.0) == out


def test_the_one_model_fit_is_pinned():
    from humpback.evaluation.metrics import lc_win_rate

    a = _pinned_frame(1)
    lc = lc_win_rate(a["preference"].to_list(), a["length"].to_list(), a["reference_length"].to_list())
    assert lc == pytest.approx(49.456194, abs=1e-5)


@pytest.mark.parametrize("change,message", [
    ({"prompt_id": ["q0", "q0", "q2"]}, (1, "prompt_id 'q0' is judged twice")),
    ({"preference": [1.5, 2.5, 1.5]}, (1, "preference must be a number in [1, 2], got 2.5")),
    ({"preference": [1.5, 0.5, 1.5]}, (1, "preference must be a number in [1, 2], got 0.5")),
    ({"preference": [1.0, 2.0, float("nan")]}, (2, "preference must be a number in [1, 2], got nan")),
    ({"length": [3.0, -1.0, 4.0]}, (1, "length must be a non-negative number, got -1.0")),
    ({"reference_length": [3.0, 4.0, float("inf")]}, (2, "reference_length must be a non-negative number, got inf")),
    ({"prompt_id": ["q0", "", "q2"]}, (1, "prompt_id must be a non-empty string, got ''")),
])
def test_bad_row_names_the_first_unusable_judgement(change, message):
    from humpback.evaluation.length_controlled import bad_row

    ok = {"prompt_id": ["q0", "q1", "q2"], "preference": [1.0, 1.5, 2.0], "length": [0.0, 4.0, 5.0],
          "reference_length": [3.0, 0.0, 5.0]}
    assert bad_row(pl.DataFrame(ok)) is None  # the ends of the scale and zero lengths are fine
    assert bad_row(pl.DataFrame(ok | change)) == message


@pytest.mark.parametrize("bad,message", [
    ({}, "no judgements to fit"),
    ({"m": frame([], [], ref=[], ids=[])}, "m: no judgements"),
    ({"m": frame([1.5, 2.5], [1, 1], ref=[1, 1], ids=["a", "b"])}, "m: every preference must lie in [1, 2]"),
    ({"m": frame([0.5, 1.5], [1, 1], ref=[1, 1], ids=["a", "b"])}, "m: every preference must lie in [1, 2]"),
    ({"m": frame([1.5, float("nan")], [1, 1], ref=[1, 1], ids=["a", "b"])}, "m: every preference must lie in [1, 2]"),
])
def test_the_fit_refuses_what_it_cannot_use(bad, message):
    with pytest.raises(ValueError) as e:
        fit_length_controlled(bad)
    assert str(e.value) == message


def test_one_judgement_and_the_ends_of_the_scale_fit():
    one = fit_length_controlled({"m": frame([2.0], [5], ref=[3], ids=["a"])})
    assert one["models"]["m"]["lc_win_rate"] == 100 and one["models"]["m"]["n"] == 1
    ends = fit_length_controlled({"m": frame([1.0, 2.0], [5, 3], ref=[3, 3], ids=["a", "b"])})
    assert ends["models"]["m"]["win_rate"] == 50

"""Paired comparisons between consecutive models: the bootstrap interval, the pairs, the stage."""

import json

import dvc_stage
import numpy as np
import polars as pl
import pytest
from test_eval_fakes import LongerJudge

from humpback.evaluation import loading
from humpback.evaluation.metrics import paired_bootstrap
from humpback.evaluation.paired import consecutive_pairs


def test_identical_preferences_give_a_tight_interval():
    b = paired_bootstrap([1.75] * 30, resamples=500, seed=0)
    assert b["win_rate"] == pytest.approx(75) and b["ci_low"] == pytest.approx(75) and b["ci_high"] == pytest.approx(75)
    assert b["excludes_50"] is True and b["n"] == 30


def test_known_preferences_give_the_expected_win_rate_and_interval():
    prefs = [2.0] * 30 + [1.0] * 10  # 75% wins
    b = paired_bootstrap(prefs, resamples=4000, seed=3)
    assert b["win_rate"] == pytest.approx(75)
    # the interval of a mean of 40 Bernoulli(0.75): about 75 +- 1.96 * sqrt(.75 * .25 / 40) = 75 +- 13.4
    assert b["ci_low"] == pytest.approx(61.6, abs=3) and b["ci_high"] == pytest.approx(88.4, abs=3)
    assert b["ci_low"] < 75 < b["ci_high"] and b["excludes_50"] is True


def test_seeded_reruns_are_equal_and_seeds_differ():
    prefs = np.random.default_rng(0).uniform(1, 2, 50).tolist()
    assert paired_bootstrap(prefs, seed=5) == paired_bootstrap(prefs, seed=5)
    assert paired_bootstrap(prefs, seed=5)["ci_low"] != paired_bootstrap(prefs, seed=6)["ci_low"]


def test_excludes_50_on_both_sides():
    low = paired_bootstrap([1.0] * 25 + [2.0] * 5, seed=0)  # b clearly better
    assert low["ci_high"] < 50 and low["excludes_50"] is True
    even = paired_bootstrap([1.0, 2.0] * 10, seed=0)  # no claim either way
    assert even["ci_low"] < 50 < even["ci_high"] and even["excludes_50"] is False
    high = paired_bootstrap([2.0] * 25 + [1.0] * 5, seed=0)
    assert high["ci_low"] > 50 and high["excludes_50"] is True


def test_bad_preferences_are_refused():
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap([])
    with pytest.raises(ValueError, match=r"\[1, 2\]"):
        paired_bootstrap([0.5, 1.5])


def test_consecutive_pairs():
    assert consecutive_pairs(["base", "m0", "it1", "it2"]) == [("m0", "base"), ("it1", "m0"), ("it2", "it1")]
    assert consecutive_pairs(["m0"]) == []


def _outputs(root, model, n, extra):
    pl.DataFrame({
        "prompt_id": [f"p{i}" for i in range(n)], "category": ["c"] * n,
        "instruction": [f"question {i}" for i in range(n)],
        "output": [f"{model} answers {i}" + " more" * extra for i in range(n)],
    }).write_parquet(root / "data/eval/outputs" / f"{model}.parquet")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/eval/outputs").mkdir(parents=True)
    (tmp_path / "models/base").mkdir(parents=True)
    # later models write longer answers; it2 answers exactly as it1 does
    for model, extra in (("base", 0), ("m0", 3), ("it1", 1)):
        _outputs(tmp_path, model, 12, extra)
    it1 = pl.read_parquet(tmp_path / "data/eval/outputs/it1.parquet")
    it1.write_parquet(tmp_path / "data/eval/outputs/it2.parquet")
    (tmp_path / "params.yaml").write_text("judge:\n  chunk_size: 5\neval:\n  paired: {resamples: 500, seed: 1}\n")
    judges = []

    def fake_judge(cfg, judge_dir, engine_cfg):
        judges.append(LongerJudge(k=3.0, scale=5.0))
        return judges[-1]

    monkeypatch.setattr(loading, "load_judge_engine", fake_judge)
    return tmp_path, judges


def test_stage_compares_consecutive_models(project):
    root, judges = project
    dvc_stage.run("paired")
    m = json.loads((root / "metrics/eval/paired.json").read_text())
    c = m["comparisons"]
    assert list(c) == ["m0_vs_base", "it1_vs_m0", "it2_vs_it1"]
    assert c["m0_vs_base"]["a"] == "m0" and c["m0_vs_base"]["b"] == "base"
    assert c["m0_vs_base"]["win_rate"] > 95 and c["m0_vs_base"]["excludes_50"] is True
    assert c["it1_vs_m0"]["win_rate"] < 5 and c["it1_vs_m0"]["ci_high"] < 50 and c["it1_vs_m0"]["excludes_50"]
    # the same answers: every prompt a tie without a judge call, and no claim
    same = c["it2_vs_it1"]
    assert same["win_rate"] == 50 and same["ci_low"] == same["ci_high"] == 50 and same["excludes_50"] is False
    assert same["n_identical"] == 12 and all(v["n"] == 12 for v in c.values())
    j = pl.read_parquet(root / "data/eval/paired/it1_vs_m0.parquet")
    assert j.height == 12 and (j["output"].str.starts_with("it1")).all()
    assert (j["reference_output"].str.starts_with("m0")).all()
    assert sorted(p.name for p in (root / "data/eval/paired").iterdir()) == [
        "it1_vs_m0.parquet", "it2_vs_it1.parquet", "m0_vs_base.parquet"]
    assert len(judges) == 1 and judges[0].closed  # one judge for every comparison


def test_stage_with_one_model_writes_no_comparisons(project):
    root, judges = project
    with open(root / "params.yaml", "a") as f:
        f.write("  models: [m0]\n")
    dvc_stage.run("paired")
    assert json.loads((root / "metrics/eval/paired.json").read_text())["comparisons"] == {}
    assert judges == []


def test_stage_names_a_missing_model_output(project, capsys):
    root, _ = project
    (root / "data/eval/outputs/it1.parquet").unlink()
    with pytest.raises(SystemExit):
        dvc_stage.run("paired")
    assert "it1.parquet" in capsys.readouterr().err


def _prefs() -> list[float]:
    return np.random.default_rng(11).uniform(1, 2, 37).round(3).tolist()


def test_the_interval_of_a_seed_is_pinned():
    """The recorded intervals (metrics/eval/*.json, dvc.lock) stay what they are: the same draws, in
    batches of 256 resamples, each prompt drawable, the percentile tails of the confidence."""
    b = paired_bootstrap(_prefs(), resamples=600, seed=1)
    assert (b["win_rate"], b["ci_low"], b["ci_high"]) == pytest.approx((47.491892, 38.174865, 56.073243), abs=1e-5)
    narrow = paired_bootstrap(_prefs(), resamples=600, seed=1, confidence=0.8)
    assert (narrow["ci_low"], narrow["ci_high"]) == pytest.approx((41.346486, 53.462432), abs=1e-5)
    # near the median every resample counts (a batch that drops or repeats one shows here)
    inner = paired_bootstrap(_prefs(), resamples=600, seed=1, confidence=0.2)
    assert (inner["ci_low"], inner["ci_high"]) == pytest.approx((46.382703, 48.654054), abs=1e-5)
    # the defaults are 2000 resamples, seed 0, 95%
    assert paired_bootstrap(_prefs()) == paired_bootstrap(_prefs(), resamples=2000, seed=0, confidence=0.95)
    assert paired_bootstrap(_prefs()) != paired_bootstrap(_prefs(), resamples=2001, seed=0)


def test_one_resample_and_the_bounds_of_the_arguments():
    one = paired_bootstrap([1.75] * 9, resamples=1)
    assert one["ci_low"] == one["ci_high"] == pytest.approx(75)
    assert paired_bootstrap([1.0, 2.0], confidence=0.999)["n"] == 2
    for resamples, confidence in ((0, 0.95), (10, 0.0), (10, 1.0), (10, 1.5)):
        with pytest.raises(ValueError) as e:
            paired_bootstrap([1.5], resamples=resamples, confidence=confidence)
        assert str(e.value) == (f"resamples must be >= 1 and confidence in (0, 1), got {resamples} and {confidence}")
    # the ends of the preference scale are preferences; just outside them is an error, named
    assert paired_bootstrap([1.0, 2.0, 1.0])["win_rate"] == pytest.approx(100 / 3)
    for bad, message in (([], "preferences: empty"), ([2.01], "preferences: every value must lie in [1, 2]"),
                         ([0.99], "preferences: every value must lie in [1, 2]"),
                         ([1.5, float("inf")], "preferences: contains NaN or infinite values")):
        with pytest.raises(ValueError) as e:
            paired_bootstrap(bad)
        assert str(e.value) == message


def test_excludes_50_just_above_it():
    b = paired_bootstrap([1.505] * 30)  # every resample is 50.5
    assert b["ci_low"] == pytest.approx(50.5) and b["excludes_50"] is True
    b = paired_bootstrap([1.495] * 30)
    assert b["ci_high"] == pytest.approx(49.5) and b["excludes_50"] is True

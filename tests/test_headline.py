"""The headline files: one short row per model and one for the judge check, from the detailed metrics."""

from __future__ import annotations

import json

import pytest

from humpback.errors import ConfigError
from humpback.evaluation.headline import headline, write_headline


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def run(tmp_path):
    ev, cur, sc = tmp_path / "eval", tmp_path / "curation", tmp_path / "scores"
    for name, win in (("base", 50.0), ("m0", 47.123), ("it1", 52.96)):
        _write(ev / f"{name}.json", {"win_rate": win, "ci_low": win - 4.04, "ci_high": win + 3.96,
                                     "heldout_nll": 2.34567, "standard_error": 1.0, "n_wins": 3})
    _write(ev / "length_controlled.json", {"models": {"m0": {"lc_win_rate": 45.55}, "it1": {"lc_win_rate": 51.04}}})
    _write(ev / "judge_check.json", {"discrimination": 0.456, "order_consistency": 0.31, "trustworthy": False, "n": 9})
    _write(cur / "it1.json", {"n": 154, "kept": 77, "histogram": {"1": 3}})
    _write(sc / "it1.json", {"mean": 3.3871, "histogram": {}})
    return ev, cur, sc


def test_rows_hold_only_the_headline_numbers(run, tmp_path):
    rows = headline(["base", "m0", "it1"], ["it1"], *run)
    assert rows["m0"] == {"win": 47.1, "lo": 43.1, "hi": 51.1, "lc": 45.5, "nll": 2.346}
    assert rows["it1"] == {"win": 53.0, "lo": 48.9, "hi": 56.9, "lc": 51.0, "nll": 2.346,
                           "pairs": 154, "kept": 77, "score": 3.39}
    assert rows["base"]["lc"] is None  # no LC for it in the fit: absent, not 0
    assert rows["judge"] == {"disc": 0.46, "order": 0.31, "ok": False}
    write_headline(rows, tmp_path / "headline")
    assert json.loads((tmp_path / "headline/base.json").read_text()) == {"win": 50.0, "lo": 46.0, "hi": 54.0,
                                                                          "nll": 2.346}
    assert sorted(p.name for p in (tmp_path / "headline").iterdir()) == ["base.json", "it1.json", "judge.json",
                                                                         "m0.json"]


def test_a_model_dropped_from_the_list_leaves_no_file(run, tmp_path):
    out = tmp_path / "headline"
    write_headline(headline(["base", "m0", "it1"], ["it1"], *run), out)
    write_headline(headline(["base", "it1"], ["it1"], *run), out)
    assert sorted(p.stem for p in out.iterdir()) == ["base", "it1", "judge"]


def test_without_a_judge_check_or_fit_the_keys_are_absent(tmp_path):
    ev, cur, sc = tmp_path / "eval", tmp_path / "curation", tmp_path / "scores"
    _write(ev / "base.json", {"win_rate": 50.0})
    rows = headline(["base"], [], ev, cur, sc)
    write_headline(rows, tmp_path / "h")
    assert json.loads((tmp_path / "h/base.json").read_text()) == {"win": 50.0}
    assert json.loads((tmp_path / "h/judge.json").read_text()) == {}


def test_a_missing_model_file_names_it(run):
    with pytest.raises(Exception, match="it2.json"):
        headline(["base", "it2"], [], *run)


def test_a_model_named_judge_is_refused(run):
    with pytest.raises(ConfigError, match="judge"):
        headline(["base", "judge"], [], *run)

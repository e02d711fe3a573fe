"""`humpback ablations`: the grid's overrides are what DVC's -S parser accepts and what the params
check accepts; a preset passed as overrides equals the preset applied; the table reads `dvc exp show`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from humpback import ablations
from humpback.config import apply_preset, read_params, validate_all

ROOT = Path(__file__).resolve().parents[1]


def apply_as_dvc(params: Path, overrides: tuple[str, ...]) -> None:
    """What `dvc exp run -S o1 -S o2 ...` writes into params.yaml."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    for path, ovr in to_path_overrides([str(params.name) + ":" + o for o in overrides]).items():
        apply_overrides(params.parent / path, ovr)


@pytest.fixture
def params(tmp_path) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path / "params.yaml"


def test_a_preset_as_overrides_equals_the_preset_applied(params, tmp_path):
    applied = tmp_path / "applied.yaml"
    shutil.copy(params, applied)
    apply_preset(ROOT / "configs/tiny.yaml", applied)
    apply_as_dvc(params, ablations.preset_overrides(ROOT / "configs/tiny.yaml"))
    assert read_params(params) == read_params(applied)


def test_every_variant_is_a_valid_params_change(params):
    grid = ablations.variants(params, scaling=(100, 800))
    assert {v.name for v in grid} >= {"baseline", "no_curation", "without_seed", "k5", "k4.5", "k5_it2_4.5",
                                      "no_tags", "inference_seed_tag", "inference_web_tag", "inference_no_tag",
                                      "scale_100", "scale_800"}
    original = params.read_text()
    for v in grid:
        params.write_text(original)
        apply_as_dvc(params, v.overrides)
        validate_all(params)  # `humpback check-params` accepts it
        changed = read_params(params)
        if v.name == "inference_seed_tag":
            assert changed["prompts"]["inference_system"] == "Answer in the style of an AI Assistant."
        if v.name == "no_tags":
            assert [changed["prompts"][k] for k in ("seed_tag", "augmented_tag", "inference_system")] == ["", "", ""]
        if v.name == "k5_it2_4.5":
            assert changed["iterations"]["it2"]["select"] == {"threshold": 4.5}
            assert changed["iterations"]["it1"] == {"prev": "m0"} and changed["select"]["threshold"] == 5
        if v.name == "scale_800":
            assert changed["iterations"]["it2"]["select"] == {"sample": 800}


def test_the_grid_follows_the_params_it_is_written_against(params):
    text = params.read_text().replace("seed_tag: \"Answer in the style of an AI Assistant.\"", "seed_tag: \"Be an AI.\"")
    text = text.replace("  it2: {prev: it1}", "  it2: {prev: it1}\n  it3: {prev: it2}")
    params.write_text(text)
    grid = {v.name: v for v in ablations.variants(params, scaling=(4,))}
    assert grid["inference_seed_tag"].overrides == ("prompts.inference_system='Be an AI.'",)
    assert "k5_it3_4.5" in grid and grid["scale_4"].overrides == ("++iterations.it3.select.sample=4",)


def test_table_from_exp_show():
    def exp(name, win, se, kept1, kept2):
        metrics = {"metrics/headline/it2.json": {"data": {"win": win, "lo": win - se, "hi": win + se,
                                                          "lc": win + 1, "kept": kept2}},
                   "metrics/headline/m0.json": {"data": {"win": 40.0}},
                   "metrics/headline/it1.json": {"data": {"win": 41.0, "kept": kept1}},
                   "metrics/headline/judge.json": {"data": {"disc": 0.5}}}
        return {"revs": [{"rev": name + "-rev", "name": name, "data": {"metrics": metrics}}], "name": name}

    show = [{"rev": "workspace", "name": None, "data": {"metrics": {}}, "experiments": None},
            {"rev": "abc", "name": "main", "data": {"metrics": {}},
             "experiments": [exp("abl-baseline", 52.5, 1.25, 10, 12), exp("abl-k4_5", 48.0, 2.0, 3, 4)]}]
    grid = ablations.variants(ROOT / "params.yaml")
    rows = ablations.table(show, grid, "it2")
    assert [r["variant"] for r in rows] == ["baseline", "k4.5"]  # variants without an experiment are left out
    assert rows[0]["win_rate"] == 52.5 and rows[0]["kept"] == {"it1": 10, "it2": 12} and rows[0]["m0_win_rate"] == 40
    md = ablations.markdown(rows, "it2").splitlines()
    assert md[2].startswith("| baseline | 52.5 [51.2, 53.8] | 53.5 | 40.0 | it1 10, it2 12 | (none) |")
    assert "`-S select.threshold=4.5`" in md[3]

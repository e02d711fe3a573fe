"""Each of the paper's ablations is one `dvc exp run -S ...`, and it makes stale only what depends on it.

A scratch copy of the tracked project (bench/pipeline.py's workspace; nothing is reproduced) gets
the params change exactly as `dvc exp run -S` writes it (DVC's own override parser and writer).
Every stage's definition is read through DVC's Repo API before and after: the rendered command,
the dep and out paths, and the values of its declared params as DVC's ParamsDependency reads them.
A stage whose definition changed is stale, and so is every stage downstream of it in DVC's graph.
That is the comparison `dvc status` makes against dvc.lock, without needing a lock that matches
the working dvc.yaml, nor any data or models.
"""

from __future__ import annotations

from pathlib import Path

import dvc_stage
import networkx as nx
import pytest

from humpback.config import validate_all

ROOT = Path(__file__).resolve().parents[1]
# the eval of the trained models, and the consecutive comparisons and the joint LC fit their answers feed
EVAL = {f"{s}@{m}" for s in ("generate", "judge", "heldout") for m in ("it1", "it2")} | {"paired", "length_controlled"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, tuple]]:
    """The scratch project and its stage definitions under the shipped params."""
    ws = dvc_stage.bench_pipeline().make_workspace(tmp_path_factory.mktemp("ablations"))
    return ws, _definitions(ws)[0]


def _definitions(ws: Path) -> tuple[dict[str, tuple], nx.DiGraph]:
    """Per stage name, what DVC compares with the lock; and the graph over stage names (an edge
    runs from a stage to a stage it depends on)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:
        out = {}
        for st in repo.index.stages:
            params, deps = {}, []
            for d in st.deps:
                if isinstance(d, ParamsDependency):
                    params.update(d.read_params())
                else:
                    deps.append(str(d.def_path))
            out[st.name] = (st.cmd, sorted(deps), params, sorted(str(o.def_path) for o in st.outs))
        graph = nx.relabel_nodes(repo.index.graph, lambda st: st.name)
    return out, graph


def stale_after(workspace: tuple[Path, dict[str, tuple]], *set_params: str) -> set[str]:
    """The stages that `dvc exp run -S <set_params> ...` would re-run; params.yaml is restored."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    ws, before = workspace
    params = ws / "params.yaml"
    original = params.read_text()
    try:
        for path, overrides in to_path_overrides(set_params).items():  # what -S does to the file
            apply_overrides(ws / path, overrides)
        validate_all(params)  # `humpback check-params` accepts the result
        after, graph = _definitions(ws)
    finally:
        params.write_text(original)
    # The params stage re-runs for any change to the file, but its output is the same for every valid
    # file, so nothing downstream re-runs because of it: it is neither counted nor followed.
    changed = {name for name, definition in after.items() if before.get(name) != definition} - {"params"}
    stale = changed | {dependent for name in changed for dependent in nx.ancestors(graph, name)}
    # `cost` merges every stage's compute entry: it follows whatever re-runs, and is left out of the sets below
    assert ("cost" in stale) == bool(stale)
    return stale - {"cost"}


def test_no_change_makes_nothing_stale(workspace):
    assert stale_after(workspace) == set()


@pytest.mark.parametrize("set_param", [
    "++iterations.it2.select.threshold=4.5",  # the paper's A_5 at iteration 2 keeps >= 4.5
    "++iterations.it2.select.sample=800",  # data scaling: N curated pairs for the last iteration
])
def test_a_selection_change_for_it2_reruns_it2_and_what_follows_only(workspace, set_param):
    stale = stale_after(workspace, set_param)
    assert stale == {"select@it2", "train@it2", "generate@it2", "judge@it2", "heldout@it2", "paired", "length_controlled",
                     "report", "export"}
    # A^(1), M1 and M1's scores come from the cache: a new it2 threshold never re-runs a score stage
    assert not stale & {"score@it1", "score@it2", "select@it1", "train@it1"}


def test_without_seed_retrains_the_forward_models_only(workspace):
    stale = stale_after(workspace, "mix.seed=false")
    assert stale == {"train@it1", "train@it2", "score@it2", "select@it2", *EVAL, "report", "export"}
    assert not stale & {"train_backward", "train_m0", "augment", "score@it1", "select@it1"}


def test_no_curation_reselects_every_iteration_but_keeps_m0s_scores(workspace):
    stale = stale_after(workspace, "select.curate=false")
    assert stale == {"select@it1", "select@it2", "train@it1", "train@it2", "score@it2", *EVAL, "report", "export"}
    assert "score@it1" not in stale


def test_scaling_steps_off_retrains_the_forward_models_only(workspace):
    stale = stale_after(workspace, "mix.scaling_steps=false")
    assert {"train@it1", "train@it2"} <= stale and not stale & {"train_backward", "train_m0", "score@it1"}


def test_the_backward_models_epochs_rerun_it_and_what_its_instructions_feed_never_m0(workspace):
    stale = stale_after(workspace, "backward.train.epochs=1")
    assert stale == {"train_backward", "augment", "heldout_backward@base", "heldout_backward@backward",
                     "score@it1", "score@it2", "select@it1", "select@it2", "train@it1", "train@it2", *EVAL,
                     "report", "export"}


def test_a_train_override_for_it2_never_reruns_scoring(workspace):
    stale = stale_after(workspace, "++iterations.it2.train.max_steps=5")
    # select@it2 declares the whole iterations.it2 (DVC rejects a declared key that may be missing,
    # such as iterations.it2.select), so it re-runs too: cheap, and its output is unchanged
    assert stale == {"select@it2", "train@it2", "generate@it2", "judge@it2", "heldout@it2", "paired", "length_controlled",
                     "report", "export"}


def test_the_inference_system_prompt_reruns_generation_judging_and_report_only(workspace):
    stale = stale_after(workspace, "prompts.inference_system='Answer briefly.'")
    assert stale == {f"{s}@{m}" for s in ("generate", "judge", "heldout") for m in ("base", "m0", "it1", "it2")} | {
        "judge_check", "paired", "length_controlled", "report", "export"}


# Every variant of `humpback ablations` (the grid a user queues), with what it must re-run.
_RESELECT = {"select@it1", "select@it2", "train@it1", "train@it2", "score@it2", *EVAL, "report", "export"}
_INFERENCE = {f"{s}@{m}" for s in ("generate", "judge", "heldout") for m in ("base", "m0", "it1", "it2")} | {
        "judge_check", "paired", "length_controlled", "report", "export"}
GRID_STALE = {
    "baseline": set(),
    "no_curation": _RESELECT,
    "without_seed": {"train@it1", "train@it2", "score@it2", "select@it2", *EVAL, "report", "export"},
    "k5": _RESELECT,
    "k4.5": _RESELECT,
    "k5_it2_4.5": _RESELECT,
    # the seed tag is in M0's training data: everything from M0 on, never the backward model's branch
    "no_tags": {"train_m0", "score@it1", *_RESELECT, *_INFERENCE},
    "inference_seed_tag": _INFERENCE,
    "inference_web_tag": _INFERENCE,
    "inference_no_tag": _INFERENCE,
    "scale_800": {"select@it2", "train@it2", "generate@it2", "judge@it2", "heldout@it2", "paired",
                  "length_controlled", "report", "export"},
}


@pytest.mark.parametrize("name", sorted(GRID_STALE))
def test_each_grid_variant_reruns_what_depends_on_it(workspace, name):
    from humpback import ablations

    grid = {v.name: v for v in ablations.variants(ROOT / "params.yaml", scaling=(800,))}
    assert set(grid) == set(GRID_STALE)
    assert stale_after(workspace, *grid[name].overrides) == GRID_STALE[name]

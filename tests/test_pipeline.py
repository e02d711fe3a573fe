"""The whole DAG under `dvc repro` on the tiny preset, and DVC's caching contract.

One workspace (a copy of the tracked project with the tiny preset applied) is reproduced once per
test session; the tests then change one input at a time and check which stages ran.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
ALL_STAGES = {
    "params", "base_model", "seed", "corpus", "train_backward", "train_m0", "augment",
    *(f"{s}@{it}" for s in ("score", "select", "train") for it in ("it1", "it2")),
    *(f"{s}@{m}" for s in ("generate", "judge") for m in ("base", "m0", "it1", "it2")),
    *(f"heldout@{m}" for m in ("base", "m0", "it1", "it2")), "heldout_backward@base", "heldout_backward@backward",
    "length_controlled",
    "judge_check", "paired",
    "report", "export", "cost",
}


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def repro(ws: Path, *targets: str) -> set[str]:
    """Run `dvc repro [targets]` and return the stages that actually ran."""
    return set(re.findall(r"Running stage '([^']+)'", _run(["dvc", "repro", *targets], ws)))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of the git-tracked project, a repository, with the tiny preset applied, reproduced once."""
    ws = dvc_stage.bench_pipeline().make_workspace(tmp_path_factory.mktemp("pipeline"))
    ran = repro(ws)
    assert ran == ALL_STAGES
    return ws


def test_full_dag_produces_every_artifact(workspace):
    ws = workspace
    for model in ("base", "backward", "m0", "it1", "it2"):
        assert (ws / "models" / model).is_dir()
    assert pl.read_parquet(ws / "data/augmented/candidates.parquet").height > 0
    for it in ("it1", "it2"):
        curation = json.loads((ws / f"metrics/curation/{it}.json").read_text())
        assert curation["kept"] > 0
    for model in ("base", "m0", "it1", "it2"):
        metrics = json.loads((ws / f"metrics/eval/{model}.json").read_text())
        for key in ("win_rate", "standard_error", "discrete_win_rate", "n_wins", "n_draws", "n_losses"):
            assert key in metrics
        assert "lc_win_rate" not in metrics  # the joint fit's, in length_controlled.json
        # the held-out answers (seed.heldout of the bundled pairs) scored by every model
        assert metrics["heldout_n"] == 16 and metrics["heldout_tokens"] > 0 and metrics["heldout_nll"] > 0
    lc = json.loads((ws / "metrics/eval/length_controlled.json").read_text())
    assert set(lc["models"]) == {"base", "m0", "it1", "it2"} and lc["reference"] == "base"
    assert lc["models"]["base"]["lc_win_rate"] == pytest.approx(50, abs=0.5)
    assert pl.read_parquet(ws / "data/prepared/heldout.parquet").height == 16
    assert (ws / "metrics/report/report.png").stat().st_size > 10_000
    # the candidate browser holds every candidate of the tiny run (far below its caps)
    assert "every row is shown" in (ws / "metrics/report/candidates.html").read_text()
    # the compute ledger: every stage that ran has its entry; the engines' and training's tokens are counted
    cost = json.loads((ws / "metrics/cost.json").read_text())
    assert set(cost["stages"]) == ALL_STAGES - {"cost"}
    assert all(cost["stages"][s]["tokens_in"] > 0 for s in ("augment", "score@it1", "train@it2", "generate@it1"))
    assert cost["stages"]["generate@it1"]["tokens_out"] > 0 and cost["stages"]["score@it1"]["backend"] == "transformers"
    assert cost["totals"]["tokens_in"] == sum(e["tokens_in"] for e in cost["stages"].values())
    # the LoRA models are adapters over models/base, not copies of it
    assert (ws / "models/it2/adapter_config.json").is_file()
    assert not list((ws / "models/it2").glob("optimizer*"))
    assert repro(ws) == set()  # a second run is a no-op


def test_judge_check_and_consecutive_comparisons(workspace):
    ws = workspace
    check = json.loads((ws / "metrics/eval/judge_check.json").read_text())
    assert check["n"] == pl.read_parquet(ws / "data/eval/judge_check.parquet").height > 0
    assert isinstance(check["trustworthy"], bool) and set(check["by_degradation"]) == {"cut", "shuffle", "other_prompt"}
    comparisons = json.loads((ws / "metrics/eval/paired.json").read_text())["comparisons"]
    assert list(comparisons) == ["m0_vs_base", "it1_vs_m0", "it2_vs_it1"]
    for name, c in comparisons.items():
        assert c["ci_low"] <= c["win_rate"] <= c["ci_high"] and c["n"] > 0
        assert pl.read_parquet(ws / f"data/eval/paired/{name}.parquet").height == c["n"]
    plotted = json.loads((ws / "metrics/plots/paired.json").read_text())
    assert [r["comparison"] for r in plotted] == list(comparisons)
    page = (ws / "metrics/report/index.html").read_text()
    assert ('class="warning"' in page) == (not check["trustworthy"]) and "<td>it2_vs_it1</td>" in page


@pytest.mark.slow  # 85 s of real training; tests/test_ablations.py checks the same stale set through DVC in seconds
def test_threshold_change_reuses_m0_scores(workspace):
    ws = workspace
    scores = pl.read_parquet(ws / "data/scores/it1.parquet")["score"].drop_nulls()
    # a threshold between the scores, so the kept set really changes and the change propagates
    threshold = float(scores.quantile(0.75, interpolation="lower"))
    if threshold <= scores.min():
        threshold = float(scores.sort()[-1])
    params = ws / "params.yaml"
    params.write_text(re.sub(r"(?m)^(  threshold:) [0-9.]+", rf"\1 {threshold}", params.read_text(), count=1))
    ran = repro(ws, "train@it2")  # the training chain; the eval stages follow the same rules
    assert "score@it1" not in ran  # M0's scores come from the cache
    # the params stage checks the changed file; its output is the same, so it re-runs nothing itself
    assert ran == {"params", "select@it1", "train@it1", "score@it2", "select@it2", "train@it2"}
    answers, nll = ws / "data/eval/outputs/it1.parquet", ws / "data/eval/heldout/it1.json"
    before = answers.read_bytes(), nll.read_bytes()
    ran = repro(ws, "judge@m0", "judge@it1")
    assert {"generate@it1", "heldout@it1"} <= ran and not ran & {"generate@m0", "judge@m0", "heldout@m0"}
    # judge@it1 follows its answers and held-out NLL: it re-runs exactly when the new it1 answered
    # differently or scored the held-out answers differently (a tiny random model may sample the same
    # 12 tokens after a small LoRA change)
    assert ("judge@it1" in ran) == ((answers.read_bytes(), nll.read_bytes()) != before)


def _stale_after_edit(ws: Path, rel: str, edit) -> set[str]:
    """The stages `dvc repro` would run after `edit` changes the file `rel`: those `dvc status` finds
    changed against dvc.lock, and everything downstream of them in DVC's graph; the file is restored."""
    import networkx as nx
    from dvc.repo import Repo

    path = ws / rel
    original = path.read_bytes()
    try:
        edit(path)
        changed = set(json.loads(_run(["dvc", "status", "--json"], ws)))
    finally:
        path.write_bytes(original)
    with Repo(str(ws)) as repo:
        graph = nx.relabel_nodes(repo.index.graph, lambda st: st.name)
    return changed | {d for name in changed for d in nx.ancestors(graph, name)}


def test_seed_change_makes_its_dependents_stale(workspace):
    extra = {"id": "extra-1", "category": "explanation", "instruction": "Why is the sky blue?",
             "output": "Sunlight scatters off air molecules, and blue light scatters the most."}
    stale = _stale_after_edit(workspace, "data/seed/seed.jsonl",
                              lambda p: p.write_text(p.read_text() + json.dumps(extra) + "\n"))
    assert {"seed", "train_backward", "train_m0", "augment", "score@it1", "train@it1", "train@it2",
            "heldout@base", "heldout_backward@base", "heldout_backward@backward", "report"} <= stale
    assert not stale & {"params", "base_model", "corpus"}


def test_an_eval_prompt_change_reaches_the_decontaminated_stages(workspace):
    stale = _stale_after_edit(workspace, "data/eval/prompts.jsonl",
                              lambda p: p.write_text(p.read_text().replace("thank-you note", "thank-you card")))
    # seed, corpus and augment are checked against the eval prompts; then everything after them
    assert {"seed", "corpus", "augment", "generate@base", "judge_check", "report"} <= stale
    assert not stale & {"params", "base_model"}

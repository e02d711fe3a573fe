"""Stage export: the hub dataset folder loads with `datasets`, its card's front matter and counts match
the data, and every trained model's card carries the numbers of its metrics files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
from huggingface_hub import ModelCard
from ruamel.yaml import YAML

from humpback.config import load_section
from humpback.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["backward", "m0", "it1", "it2"]
SEED_TAG = "Answer in the style of an AI Assistant."
WEB_TAG = "Answer with knowledge from web search."


def _seed(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"s{i}" for i in range(n)], "instruction": [f"Seed question {i}?" for i in range(n)],
                         "output": [f"Seed answer {i}." for i in range(n)]})


def _curated(it: str, n: int) -> pl.DataFrame:
    return pl.DataFrame({"instruction": [f"{it} instruction {i}" for i in range(n)],
                         "output": [f"{it} web segment {i}, long enough." for i in range(n)],
                         "segment_id": [f"seg-{i}" for i in range(n)],
                         "score": [3.0 + i / 4 for i in range(n)]})


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _train_metrics(name: str, seed: int, curated: int) -> dict:
    """The committed metrics/train/<name>.json of the default run, with this project's counts."""
    data = json.loads((ROOT / "metrics/train" / f"{name}.json").read_text())
    origins = {"seed": seed, **({"curated": curated} if curated else {})}
    data.update(examples=seed + curated, examples_by_origin=origins)
    return data


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch project shaped like a finished default run: 5 seed pairs, it1 kept 3 of 7 scored
    candidates and it2 kept 4 of 8; the eval metrics are the committed ones of the default run."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data/prepared").mkdir(parents=True)
    _seed(5).write_parquet(tmp_path / "data/prepared/seed.parquet")
    (tmp_path / "data/curated").mkdir(parents=True)
    for it, kept, n in (("it1", 3, 7), ("it2", 4, 8)):
        _curated(it, kept).write_parquet(tmp_path / f"data/curated/{it}.parquet")
        _json(tmp_path / f"metrics/curation/{it}.json",
              {"mode": "logprob", "curate": True, "threshold": 1.0, "n": n, "kept": kept, "kept_share": kept / n,
               "histogram": {"1": 0, "2": 1, "3": n - kept - 1, "4": kept, "5": 0, "unparsed": 0}})
    _json(tmp_path / "metrics/train/backward.json", _train_metrics("backward", 5, 0))
    _json(tmp_path / "metrics/train/m0.json", _train_metrics("m0", 5, 0))
    _json(tmp_path / "metrics/train/it1.json", _train_metrics("it1", 5, 3))
    _json(tmp_path / "metrics/train/it2.json", _train_metrics("it2", 5, 4))
    shutil.copytree(ROOT / "metrics/eval", tmp_path / "metrics/eval")
    for model, nll in (("base", 2.6327), ("backward", 1.8133)):  # heldout_backward@<model>
        _json(tmp_path / f"metrics/eval/backward/{model}.json", {"heldout_nll": nll, "heldout_ppl": 6.1,
              "heldout_tokens": 267, "heldout_n": 16, "heldout_dropped": 0, "model": model, "kind": "backward"})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(project, monkeypatch, capsys, *extra):
    return dvc_stage.run_in_process(project, "export", None, *extra, monkeypatch=monkeypatch, capsys=capsys)


def _front_matter(path: Path) -> tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    m = re.fullmatch(r"---\n(.*?)\n---\n(.*)", text, re.DOTALL)
    assert m, f"{path}: no YAML front matter"
    return YAML(typ="safe").load(m.group(1)), m.group(2)


def _row(body: str, label: str) -> list[str]:
    """The cells after `label` in the card's Markdown table row for it."""
    line = next(ln for ln in body.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


@pytest.fixture
def exported(project, monkeypatch, capsys):
    done = _run(project, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    return project


def test_the_dataset_loads_with_datasets_per_config(exported, tmp_path_factory):
    from datasets import load_dataset

    folder = str(exported / "exports/dataset")
    cache = str(tmp_path_factory.mktemp("hf-cache"))  # not the user's ~/.cache
    curated = load_dataset(folder, "curated", split="train", cache_dir=cache)
    assert curated.column_names == ["instruction", "output", "segment_id", "score"]
    assert curated.to_list() == _curated("it2", 4).to_dicts()  # the last iteration's pairs, as select@ kept them
    meta, _ = _front_matter(exported / "exports/dataset/README.md")
    # num_bytes, informational (datasets checks num_examples): the Arrow size, near what datasets measures
    num_bytes = {i["config_name"]: i["splits"][0]["num_bytes"] for i in meta["dataset_info"]}
    assert num_bytes["curated"] == pytest.approx(curated.data.nbytes, rel=0.05)
    mixture = load_dataset(folder, "mixture", split="train", cache_dir=cache)
    assert mixture.column_names == ["origin", "system", "instruction", "output", "messages"]
    rows = mixture.to_list()
    assert [r["origin"] for r in rows] == ["seed"] * 5 + ["curated"] * 4
    assert {r["system"] for r in rows[:5]} == {SEED_TAG} and {r["system"] for r in rows[5:]} == {WEB_TAG}
    assert [r["instruction"] for r in rows] == _seed(5)["instruction"].to_list() + _curated("it2", 4)["instruction"].to_list()
    assert rows[5]["messages"] == [{"role": "system", "content": WEB_TAG},
                                   {"role": "user", "content": "it2 instruction 0"},
                                   {"role": "assistant", "content": "it2 web segment 0, long enough."}]
    assert load_dataset(folder, split="train", cache_dir=cache).num_rows == 4  # curated is the default config


def test_the_front_matter_parses_and_names_the_files_it_ships(exported):
    folder = exported / "exports/dataset"
    meta, body = _front_matter(folder / "README.md")
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert set(configs) == {"curated", "mixture"}
    shipped = {str(p.relative_to(folder)) for p in folder.rglob("*.parquet")}
    assert {f["path"] for c in configs.values() for f in c["data_files"]} == shipped
    assert meta["license"] == "other" and "**Not set.** `export.license`" in body
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["text-generation"]
    assert meta["language"] == ["en"] and "instruction-backtranslation" in meta["tags"]
    sizes = {i["config_name"]: i["splits"][0]["num_examples"] for i in meta["dataset_info"]}
    assert all(i["splits"][0]["num_bytes"] > 0 for i in meta["dataset_info"])
    assert sizes == {"curated": 4, "mixture": 9}
    assert "hf upload <user>/<dataset-name> exports/dataset . --repo-type dataset" in body
    assert "arXiv:2308.06259" in body and "@article{li2023self" in body


def test_the_dataset_cards_counts_are_the_datas(exported):
    _, body = _front_matter(exported / "exports/dataset/README.md")
    assert _row(body, "candidates scored")[0] == "8"  # metrics/curation/it2.json n
    assert _row(body, "kept (curated rows)")[0] == "4"
    assert _row(body, "seed pairs")[0] == "5"
    assert _row(body, "mixture rows")[:2] == ["9", "5 seed + 4 curated"]
    assert _row(body, "candidates") == ["0", "1", "3", "4", "0", "0"]  # the score histogram, scores 1-5 and unparsed
    assert "Scores of the kept pairs: min 3.00, median 3.38, mean 3.38, max 3.75." in body
    assert "scored by model `it1`" in body and "threshold 1, top_share 0.5" in body


def test_every_model_card_carries_its_metrics(exported):
    ev = {n: json.loads((exported / f"metrics/eval/{n}.json").read_text()) for n in ("m0", "it1", "it2")}
    lc = json.loads((exported / "metrics/eval/length_controlled.json").read_text())["models"]
    assert sorted(p.name for p in (exported / "exports/models").iterdir()) == sorted(MODELS)
    for name in MODELS:
        path = exported / f"exports/models/{name}/README.md"
        card = ModelCard.load(path)
        assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert card.data.library_name == "peft" and card.data.license == "other"
        train = json.loads((exported / f"metrics/train/{name}.json").read_text())
        assert _row(card.text, "examples trained on") == [str(train["examples"])]
        if name == "backward":  # not judged; its held-out instructions' NLL, beside the base's
            assert card.data.eval_results is None and "Not evaluated." not in card.text
            assert _row(card.text, "held-out instruction NLL per token, this model") == [
                "1.8133 (16 pairs, 267 tokens)", "`metrics/eval/backward/backward.json`"]
            assert _row(card.text, "held-out instruction NLL per token, the base model")[0].startswith("2.6327 ")
            continue
        got = {r.metric_type: r.metric_value for r in card.data.eval_results}
        assert got == pytest.approx({"win_rate": ev[name]["win_rate"], "win_rate_ci_low": ev[name]["ci_low"],
                                     "win_rate_ci_high": ev[name]["ci_high"], "lc_win_rate": lc[name]["lc_win_rate"],
                                     "heldout_nll": ev[name]["heldout_nll"]}, abs=1e-4)
        win = _row(card.text, "win rate")[0]
        assert win == f"{ev[name]['win_rate']:.2f} (95% CI {ev[name]['ci_low']:.2f} to {ev[name]['ci_high']:.2f})"
        assert _row(card.text, "held-out NLL per token")[0].startswith(f"{ev[name]['heldout_nll']:.4f} ")
    it2 = (exported / "exports/models/it2/README.md").read_text()
    pair = json.loads((ROOT / "metrics/eval/paired.json").read_text())["comparisons"]["it2_vs_it1"]
    assert f"| paired win rate vs it1 | {pair['win_rate']:.2f} (95% CI {pair['ci_low']:.2f} to {pair['ci_high']:.2f}) |" in it2
    assert "hf upload <user>/humpback-it2 models/it2 ." in it2
    assert "exports/models/it2/README.md README.md" in it2


def test_the_train_params_in_a_card_are_those_its_iteration_saw(project, monkeypatch, capsys):
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("  it2: {prev: it1}", "  it2: {prev: it1, train: {learning_rate: 5.0e-5}}"))
    assert _run(project, monkeypatch, capsys).returncode == 0
    assert "learning_rate: 5e-05" in (project / "exports/models/it2/README.md").read_text()
    assert "learning_rate: 0.0002" in (project / "exports/models/it1/README.md").read_text()
    # the backward model trained with the backward section's keys on top of train
    assert "epochs: 2" in (project / "exports/models/backward/README.md").read_text()
    assert "epochs: 1" in (project / "exports/models/m0/README.md").read_text()


def test_a_backward_model_without_its_heldout_files_is_not_evaluated(project, monkeypatch, capsys):
    shutil.rmtree(project / "metrics/eval/backward")
    assert _run(project, monkeypatch, capsys).returncode == 0
    card = (project / "exports/models/backward/README.md").read_text()
    assert "Not evaluated." in card and "held-out instruction NLL" not in card


def test_a_full_checkpoint_is_a_transformers_card_and_set_licenses_show(project, monkeypatch, capsys):
    m = json.loads((project / "metrics/train/it2.json").read_text())
    _json(project / "metrics/train/it2.json", {**m, "mode": "full"})
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("  license: other ", "  license: cc-by-4.0 ")
                      .replace("  dataset_repo: \"\"", "  dataset_repo: me/humpback-data"))
    assert _run(project, monkeypatch, capsys).returncode == 0
    it2 = ModelCard.load(project / "exports/models/it2/README.md")
    assert it2.data.library_name == "transformers" and it2.data.datasets == ["me/humpback-data"]
    assert ModelCard.load(project / "exports/models/it1/README.md").data.datasets is None  # trained on it1's data
    meta, body = _front_matter(project / "exports/dataset/README.md")
    assert meta["license"] == "cc-by-4.0" and "Not set" not in body
    assert "hf upload me/humpback-data exports/dataset" in body


def test_a_base_without_hub_id_is_loaded_from_its_directory(project, monkeypatch, capsys):
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("  source: embedded ", "  source: tiny "))
    assert _run(project, monkeypatch, capsys).returncode == 0
    card = ModelCard.load(project / "exports/models/it1/README.md")
    assert card.data.base_model is None and 'AutoModelForCausalLM.from_pretrained("models/base")' in card.text
    assert "The base model (`tiny`) has no hub id" in card.text


def test_export_iteration_picks_the_exported_iteration(project, monkeypatch, capsys):
    params = project / "params.yaml"
    params.write_text(params.read_text().replace('  iteration: ""', "  iteration: it1"))
    assert _run(project, monkeypatch, capsys).returncode == 0
    assert pl.read_parquet(project / "exports/dataset/data/curated/train.parquet").equals(_curated("it1", 3))


@pytest.mark.parametrize("fault, named", [
    (lambda p: (p / "metrics/eval/it1.json").unlink(), "metrics/eval/it1.json: file not found (has judge@it1 run?)"),
    (lambda p: (p / "metrics/train/m0.json").unlink(), "metrics/train/m0.json: file not found (has train_m0 run?)"),
    (lambda p: (p / "data/curated/it2.parquet").unlink(), "data/curated/it2.parquet: file not found"),
    (lambda p: (p / "metrics/curation/it2.json").write_text("[1, 2"), "metrics/curation/it2.json: malformed JSON"),
    # the training mixture's counts disagree with what train@it2 says it learnt from
    (lambda p: _json(p / "metrics/train/it2.json", _train_metrics("it2", 5, 3)),
     "metrics/train/it2.json: the model was trained on 3 curated + 5 seed examples but"),
    (lambda p: _curated("it2", 5).write_parquet(p / "data/curated/it2.parquet"),
     "metrics/curation/it2.json: says 4 pairs were kept but data/curated/it2.parquet holds 5"),
    (lambda p: _json(p / "metrics/eval/it2.json", {"win_rate": "high"}), "metrics/eval/it2.json: missing key(s) ci_low"),
])
def test_bad_or_missing_inputs_are_one_line_naming_the_file(project, monkeypatch, capsys, fault, named):
    fault(project)
    done = _run(project, monkeypatch, capsys)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and named in done.stderr, done.stderr
    assert not (project / "exports/dataset").exists()


@pytest.mark.parametrize("value, problem", [
    ("license: Apache 2", "export.license: 'Apache 2' is not a hub license id"),
    ("base_model: not-a-hub-id", "export.base_model: 'not-a-hub-id' is not a hub id"),
])
def test_export_params_are_checked(tmp_path, value, problem):
    p = tmp_path / "params.yaml"
    p.write_text(f"export: {{{value}}}\n")
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_section("export", p)


def test_the_stage_script_end_to_end_writes_the_same_bytes_twice(project):
    done = dvc_stage.run_subprocess("export", cwd=project)
    assert done.returncode == 0, done.stderr
    first = {p: p.read_bytes() for p in sorted((project / "exports").rglob("*")) if p.is_file()}
    assert len(first) == 2 + 1 + len(MODELS)  # two Parquet files, the dataset card, one card per model
    done = dvc_stage.run_subprocess("export", cwd=project)
    assert done.returncode == 0, done.stderr
    assert {p: p.read_bytes() for p in sorted((project / "exports").rglob("*")) if p.is_file()} == first
    assert not list(project.glob("exports/.*.tmp"))

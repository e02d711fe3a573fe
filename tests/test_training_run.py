"""Fine-tuning runs on a tiny random Llama: what is saved, how it loads, the lr really used, determinism,
and the stage script (through `accelerate launch`) end to end."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

import stages.train
from humpback.models import BaseModelConfig, ModelRef, TinyConfig, load_model, load_tokenizer, prepare_base, resolve
from humpback.prompts import PromptsConfig
from humpback.training.config import TrainConfig
from humpback.training.data import build_examples
from humpback.training.trainer import train_model

ROOT = Path(__file__).resolve().parents[1]
PAIRS = pl.DataFrame({
    "instruction": [f"Tell me fact number {i} about rivers." for i in range(12)],
    "output": [f"River fact {i}: water flows downhill toward the sea." for i in range(12)],
    "source_id": [str(i) for i in range(12)],
})
# tiny and fast: 2 steps of 2 examples, fp32, a large lr so that two steps visibly move the adapter
FAST = TrainConfig(max_steps=2, batch_size=2, small_data_batch_size=2, per_device_batch_size=2, max_seq_len=64,
                   learning_rate=5e-3, final_lr_ratio=0.9, warmup_ratio=0.0, logging_steps=1, bf16=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train") / "base"
    prepare_base(BaseModelConfig(source="tiny", tiny=TinyConfig(hidden_size=32, intermediate_size=64)), d)
    return d


@pytest.fixture(scope="module")
def lora_run(base):
    out = base.parent / "m0"
    metrics = train_model(build_examples("m0", PromptsConfig(), PAIRS), base, out, FAST)
    return out, metrics


def test_lora_saves_only_the_adapter_tokenizer_and_meta(lora_run, base):
    out, metrics = lora_run
    files = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "humpback_model.json", "tokenizer.json"} <= files
    assert not files & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "config.json",
                        "model.safetensors", "README.md"}
    assert not any(p.is_dir() for p in out.iterdir())  # no checkpoint-N folders
    assert json.loads((out / "humpback_model.json").read_text()) == {"kind": "adapter", "base": str(base)}
    assert not out.with_name("m0.tmp").exists()
    assert metrics["steps"] == 2 and metrics["effective_batch"] == 2 and metrics["examples"] == 12
    assert metrics["examples_by_origin"] == {"seed": 12} and metrics["train_loss_first"] > 0
    # PEFT keeps target_modules in set order, which changes between processes; sorted, equal weights give equal files
    modules = json.loads((out / "adapter_config.json").read_text())["target_modules"]
    assert len(modules) > 3 and modules == sorted(modules)


def test_lr_really_used_ends_at_the_ratio_of_the_peak(lora_run):
    _, m = lora_run
    assert m["lr_first"] == pytest.approx(5e-3)
    assert m["lr_last"] == pytest.approx(0.9 * 5e-3)  # 4.5e-3: the ratio of the peak, not 9e-6


def test_adapter_loads_through_resolve_and_changes_the_outputs(lora_run, base):
    out, _ = lora_run
    ref = resolve(out)
    assert ref.base == str(base) and ref.adapter == str(out)
    tok = load_tokenizer(ref)
    ids = tok("River fact", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        tuned = load_model(ref, dtype="float32")(ids).logits
        plain = load_model(resolve(base), dtype="float32")(ids).logits
    assert (tuned - plain).abs().max() > 1e-4


def test_same_seed_gives_identical_adapter_weights(lora_run, base, tmp_path):
    out, _ = lora_run
    train_model(build_examples("m0", PromptsConfig(), PAIRS), base, tmp_path / "again", FAST)
    a, b = load_file(out / "adapter_model.safetensors"), load_file(tmp_path / "again" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)  # trained, not the zero init


def test_full_fine_tuning_saves_a_checkpoint_that_reloads(base, tmp_path):
    cfg = dataclasses.replace(FAST, mode="full", max_steps=1)
    out = tmp_path / "full"
    m = train_model(build_examples("backward", PromptsConfig(), PAIRS), base, out, cfg)
    assert m["mode"] == "full" and m["steps"] == 1
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    assert not {"training_args.bin", "optimizer.pt"} & {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["attention_dropout"] == 0.0  # dropout was for training; the saved config is the model's
    ref = resolve(out)
    assert ref.adapter is None and ref.base == str(out)
    model = load_model(ref, dtype="float32")
    before = load_model(resolve(base), dtype="float32")
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, before.model.layers[0].mlp.up_proj.weight)


def _project(tmp_path: Path, base: Path) -> Path:
    """A project dir: params with a fast train section, the tiny base, seed and curated tables."""
    (tmp_path / "models").mkdir()
    shutil.copytree(base, tmp_path / "models" / "base")
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "curated").mkdir(parents=True)
    PAIRS.write_parquet(tmp_path / "data/prepared/seed.parquet")
    PAIRS.head(4).select("instruction", "output").with_columns(segment_id=pl.lit("s"), score=pl.lit(5)).write_parquet(
        tmp_path / "data/curated/it1.parquet")
    (tmp_path / "params.yaml").write_text(
        "train:\n  max_steps: 1\n  batch_size: 2\n  small_data_batch_size: 2\n  per_device_batch_size: 2\n"
        "  max_seq_len: 64\n  bf16: false\n  logging_steps: 1\n")
    return tmp_path


def test_stage_under_accelerate_launch_trains_forward_on_seed_and_curated(base, tmp_path, monkeypatch):
    proj = _project(tmp_path, base)
    # PYTHONSAFEPATH: the script's folder (stages/) is not put first on sys.path
    env = {**os.environ, "PYTHONSAFEPATH": "1", "TOKENIZERS_PARALLELISM": "false"}
    script, *args = dvc_stage.command("train", "it1")[1:]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs/accelerate/ddp.yaml"),
           "--num_processes", "1", "--cpu", script, *args]
    r = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((proj / "metrics/train/it1.json").read_text())
    assert m["kind"] == "forward" and m["examples_by_origin"] == {"seed": 12, "curated": 4} and m["steps"] == 1
    monkeypatch.chdir(proj)  # the adapter names its base as given: models/base, relative to the project
    assert resolve("models/it1") == ModelRef(base="models/base", adapter="models/it1")
    assert json.loads((proj / "models/it1/humpback_model.json").read_text())["base"] == "models/base"


def test_stage_empty_seed_is_a_one_line_error(base, tmp_path, monkeypatch, capsys):
    proj = _project(tmp_path, base)
    pl.DataFrame(schema={"instruction": pl.Utf8, "output": pl.Utf8}).write_parquet(proj / "data/prepared/seed.parquet")
    monkeypatch.chdir(proj)
    with pytest.raises(SystemExit) as e:
        dvc_stage.run("train_m0")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: data/prepared/seed.parquet: no seed pairs to train on" in err and "Traceback" not in err
    assert not (proj / "models/m0").exists()
    argv = dvc_stage.command("train", "it1")[2:]
    i = argv.index("--curated")
    with pytest.raises(SystemExit):
        stages.train.main(argv[:i] + argv[i + 2:])
    assert "--curated is required for --kind forward" in capsys.readouterr().err


@pytest.mark.parametrize("n, row", [
    (100, (100, 8, 30)), (800, (800, 8, 300)), (1_600, (1_600, 8, 600)), (3_200, (3_200, 32, 500)),
    (6_400, (6_400, 32, 600)), (12_800, (12_800, 32, 600)), (25_600, (25_600, 32, 1_200)),
    (51_200, (51_200, 32, 1_600)),  # the paper's Table 18, row by row
    (1, (100, 8, 30)), (99, (100, 8, 30)),  # under the first row: the first row
    (799, (100, 8, 30)), (3_199, (1_600, 8, 600)), (3_201, (3_200, 32, 500)),  # between rows: the one below
    (1_000_000, (51_200, 32, 1_600)),  # past the last row: the last
])
def test_data_scaling_steps_follow_the_papers_table(n, row):
    from humpback.training.schedule import scaling_row

    r = scaling_row(n)
    assert (r.n, r.batch_size, r.max_steps) == row


def test_data_scaling_needs_a_positive_n():
    from humpback.training.schedule import scaling_row

    with pytest.raises(ValueError):
        scaling_row(0)


def test_forward_without_seed_and_the_iterations_train_override(base, tmp_path, monkeypatch):
    proj = _project(tmp_path, base)
    params = proj / "params.yaml"
    params.write_text(params.read_text() + "iterations:\n  it1: {prev: m0, mix: {seed: false}, train: {max_steps: 2}}\n"
                      "  it2: {prev: it1}\n")
    monkeypatch.chdir(proj)
    dvc_stage.run("train", "it1")
    m = json.loads(Path("metrics/train/it1.json").read_text())
    assert m["examples_by_origin"] == {"curated": 4} and m["examples"] == 4  # the paper's "w/o seed"
    assert m["mix"] == {"seed": False, "scaling_steps": True} and m["iteration"] == "it1" and m["scaling"] is None
    assert m["steps"] == 2  # iterations.it1.train.max_steps over the section's 1


def test_forward_on_a_sample_of_n_trains_the_papers_steps_for_n(base, tmp_path, monkeypatch):
    proj = _project(tmp_path, base)
    (proj / "data/scores").mkdir()
    PAIRS.select("instruction", "output").with_columns(
        segment_id=pl.Series([f"s{i:02d}" for i in range(12)]), score=pl.lit(4.0)).write_parquet(
        proj / "data/scores/it1.parquet")
    params = proj / "params.yaml"
    base_params = params.read_text()
    base_params = base_params.replace("per_device_batch_size: 2", "per_device_batch_size: 8")  # 1 micro-batch a step
    params.write_text(base_params + "iterations:\n  it1: {prev: m0, select: {sample: 6}}\n  it2: {prev: it1}\n")
    monkeypatch.chdir(proj)
    dvc_stage.run("select", "it1")  # records N = 6 in the curated table
    dvc_stage.run("train", "it1")
    m = json.loads(Path("metrics/train/it1.json").read_text())
    # N = 6 is under the table's first row (100 -> batch 8, 30 steps): not train.max_steps 1 at batch 2
    assert m["scaling"] == {"n": 6, "table_n": 100, "batch_size": 8, "max_steps": 30}
    assert m["steps"] == 30 and m["effective_batch"] == 8
    assert m["examples_by_origin"] == {"seed": 12, "curated": 6}  # N curated pairs, the seed pairs on top

    params.write_text(base_params + "mix:\n  scaling_steps: false\n"
                      "iterations:\n  it1: {prev: m0, select: {sample: 6}}\n  it2: {prev: it1}\n")
    dvc_stage.run("train", "it1")
    m = json.loads(Path("metrics/train/it1.json").read_text())
    assert m["scaling"] is None and m["steps"] == 1 and m["effective_batch"] == 2  # the train section's own


@pytest.mark.slow
def test_lora_on_the_embedded_model_learns_and_reloads(tmp_path):
    base = tmp_path / "base"
    prepare_base(BaseModelConfig(source="embedded"), base)
    cfg = dataclasses.replace(FAST, max_steps=3, learning_rate=1e-3, bf16="auto", max_seq_len=128)
    m = train_model(build_examples("m0", PromptsConfig(), PAIRS), base, tmp_path / "m0", cfg)
    assert m["steps"] == 3 and 0 < m["train_loss_last"] < 20
    ref = resolve(tmp_path / "m0")
    tok = load_tokenizer(ref)
    ids = tok.apply_chat_template([{"role": "user", "content": "Tell me fact number 3 about rivers."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        tuned = load_model(ref, dtype="float32")(ids).logits
        plain = load_model(resolve(base), dtype="float32")(ids).logits
    assert (tuned - plain).abs().max() > 1e-3


def test_forward_on_an_empty_curated_set_that_select_allowed(base, tmp_path, monkeypatch, capsys):
    """select.allow_empty let an empty A_k through: with the seed there is still data to learn;
    without it the stage stops with one line."""
    proj = _project(tmp_path, base)
    pl.DataFrame(schema={"instruction": pl.Utf8, "output": pl.Utf8, "segment_id": pl.Utf8, "score": pl.Float64}) \
        .write_parquet(proj / "data/curated/it1.parquet")
    monkeypatch.chdir(proj)
    dvc_stage.run("train", "it1")
    assert json.loads(Path("metrics/train/it1.json").read_text())["examples_by_origin"] == {"seed": 12}
    Path("params.yaml").write_text(Path("params.yaml").read_text() + "mix:\n  seed: false\n")
    with pytest.raises(SystemExit):
        dvc_stage.run("train", "it1")
    assert "data/curated/it1.parquet: no curated pairs to train on" in capsys.readouterr().err


def test_the_label_only_loss_trains_the_same_model_as_the_models_own(base, tmp_path):
    """Two micro-batches accumulated per step, so the normalisation by the batch's labelled tokens
    counts too: the same logged losses and (up to float rounding) the same weights. (Full fine-tuning's
    gradients, the tied head's included: tests/test_training_loss.py.)"""
    cfg = dataclasses.replace(FAST, batch_size=4, small_data_batch_size=4, max_steps=2)
    runs = {}
    for positions in ("labelled", "all"):
        out = tmp_path / positions
        m = train_model(build_examples("backward", PromptsConfig(), PAIRS), base, out,
                        dataclasses.replace(cfg, loss_positions=positions))
        assert m["loss_positions"] == positions and m["gradient_accumulation"] == 2
        weights = load_file(out / "adapter_model.safetensors")
        runs[positions] = (m, weights)
    (a, wa), (b, wb) = runs["labelled"], runs["all"]
    assert a["train_loss_first"] == pytest.approx(b["train_loss_first"], rel=1e-4)
    assert a["train_loss_mean"] == pytest.approx(b["train_loss_mean"], rel=1e-4)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4, rtol=1e-3), k


@pytest.mark.skipif(not __import__("humpback.training.trainer", fromlist=["use_bf16"]).use_bf16("auto"),
                    reason="this CPU has no fast bf16: the default trains in fp32 here")
def test_bf16_lora_keeps_frozen_weights_in_bf16_and_trains_the_same_adapter(base, tmp_path, monkeypatch):
    """Frozen linear weights stored in bf16 give the products autocast gives from fp32 weights: the same
    logged losses and the same adapter, bit for bit."""
    import humpback.training.trainer as trainer

    cfg = dataclasses.replace(FAST, bf16=True)
    kept: dict = {}
    real = trainer.frozen_linears_in

    def spy(model, dtype):
        kept["changed"] = real(model, dtype)
        kept["dtypes"] = {n: p.dtype for n, p in model.named_parameters()}
        return kept["changed"]

    monkeypatch.setattr(trainer, "frozen_linears_in", spy)
    m_bf16 = train_model(build_examples("m0", PromptsConfig(), PAIRS), base, tmp_path / "bf16", cfg)
    layers = json.loads((base / "config.json").read_text())["num_hidden_layers"]
    assert kept["changed"] == 7 * layers  # q k v o gate up down in every layer; not the head
    dtypes = kept["dtypes"]
    assert all(d == torch.float32 for n, d in dtypes.items() if "lora_" in n)
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if n.endswith("base_layer.weight"))
    assert all(d == torch.float32 for n, d in dtypes.items() if "norm" in n or "embed" in n)

    monkeypatch.setattr(trainer, "frozen_linears_in", lambda model, dtype: 0)
    m_fp32 = train_model(build_examples("m0", PromptsConfig(), PAIRS), base, tmp_path / "fp32", cfg)
    assert m_bf16["train_loss_first"] == m_fp32["train_loss_first"]
    assert m_bf16["train_loss_last"] == m_fp32["train_loss_last"]
    a = load_file(tmp_path / "bf16" / "adapter_model.safetensors")
    b = load_file(tmp_path / "fp32" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

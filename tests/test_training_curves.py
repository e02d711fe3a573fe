"""Training curves (humpback.training.curves): dvclive's files of the loss, learning rate and gradient norm
of every optimizer step, from real runs on a tiny random Llama; a rerun or a failed run; one writer among
several processes; dvclive under `dvc exp run`'s environment; the stages and plots in dvc.yaml; and
(slow) `dvc plots show` / `dvc plots diff` over a scratch DVC project."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dvc_stage
import pytest
from ruamel.yaml import YAML
from test_training_run import PAIRS  # the same twelve seed pairs
from transformers import TrainerControl, TrainerState, TrainingArguments

import humpback.training.trainer as trainer_mod
from humpback.prompts import PromptsConfig
from humpback.training.config import TrainConfig
from humpback.training.curves import CURVES, CurvesCallback
from humpback.training.data import build_examples
from humpback.training.schedule import lr_factor
from humpback.training.trainer import train_model

ROOT = Path(__file__).resolve().parents[1]
# 6 steps of 2 examples: 3 of warmup (ceil(0.4 * 6)), then down to 0.2 of the peak
FAST = TrainConfig(max_steps=6, batch_size=2, small_data_batch_size=2, per_device_batch_size=2, max_seq_len=48,
                   learning_rate=5e-3, final_lr_ratio=0.2, warmup_ratio=0.4, logging_steps=1, bf16=False)
FILES = ["metrics.json", "plots/metrics/grad_norm.tsv", "plots/metrics/learning_rate.tsv", "plots/metrics/loss.tsv"]


def curve(directory: Path, name: str) -> list[tuple[int, float]]:
    with open(directory / "plots" / "metrics" / f"{name}.tsv", newline="") as f:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(f, delimiter="\t")]


def files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def train(base: Path, out: Path, curves: Path, cfg: TrainConfig = FAST) -> dict:
    return train_model(build_examples("m0", PromptsConfig(), PAIRS), base, out, cfg, curves=curves)


@pytest.fixture
def logged(monkeypatch) -> list[dict]:
    """Every dict the Trainer logs, as its callbacks receive it."""
    seen: list[dict] = []

    class Recorder(trainer_mod._Recorder):
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs or {}))
            super().on_log(args, state, control, logs=logs, **kwargs)

    monkeypatch.setattr(trainer_mod, "_Recorder", Recorder)
    return seen


def test_every_optimizer_step_is_one_point_of_each_curve(tiny_model_dir, tmp_path, logged):
    curves = tmp_path / "curves" / "m0"
    m = train(tiny_model_dir, tmp_path / "m0", curves)
    assert m["steps"] == 6
    # dvclive's plots and summary only: no dvc.yaml, params, report or step signal of its own
    assert list(files(curves)) == FILES
    steps = [log for log in logged if "loss" in log]  # the end-of-training summary has train_loss instead
    assert len(steps) == 6 and any("train_runtime" in log for log in logged)
    for name in CURVES:
        points = curve(curves, name)
        assert [s for s, _ in points] == [1, 2, 3, 4, 5, 6], name
        assert [v for _, v in points] == [log[name] for log in steps], name  # the Trainer's values, exactly
    losses = [v for _, v in curve(curves, "loss")]
    assert losses[0] == m["train_loss_first"] and losses[-1] == m["train_loss_last"]
    assert sum(losses) / len(losses) == pytest.approx(m["train_loss_mean"], rel=1e-6)
    lrs = [v for _, v in curve(curves, "learning_rate")]
    warmup = math.ceil(FAST.warmup_ratio * 6)
    assert lrs == pytest.approx([5e-3 * lr_factor(s, 6, warmup, 0.2) for s in range(6)], rel=1e-9)
    assert lrs[warmup] == pytest.approx(5e-3) and lrs[-1] == pytest.approx(0.2 * 5e-3)
    assert (lrs[0], max(lrs), lrs[-1]) == (m["lr_first"], m["lr_max"], m["lr_last"])  # the lr each step used
    assert all(v > 0 for _, v in curve(curves, "grad_norm"))
    summary = json.loads((curves / "metrics.json").read_text())
    assert summary == {"loss": losses[-1], "learning_rate": lrs[-1], "grad_norm": curve(curves, "grad_norm")[-1][1],
                       "step": 6}
    assert not curves.with_name("m0.tmp").exists()


def test_a_failed_run_leaves_the_previous_curves_and_a_rerun_starts_afresh(tiny_model_dir, tmp_path, monkeypatch):
    curves = tmp_path / "curves" / "m0"
    train(tiny_model_dir, tmp_path / "m0", curves)
    first = files(curves)

    def fail_at_step_3(self, args, state, control, **kwargs):
        if state.global_step == 2:  # the third optimizer step, after two points were logged
            raise RuntimeError("stopped at step 3")

    with monkeypatch.context() as m:
        m.setattr(trainer_mod._Recorder, "on_optimizer_step", fail_at_step_3)
        with pytest.raises(RuntimeError, match="stopped at step 3"):
            train(tiny_model_dir, tmp_path / "m0", curves, dataclasses.replace(FAST, learning_rate=1e-3))
    assert files(curves) == first and not (tmp_path / "curves" / "m0.tmp").exists()
    # what a killed run could have left: a stray file in the curves, a half copy beside them
    (curves / "plots" / "metrics" / "old.tsv").write_text("step\told\n1\t1.0\n")
    (tmp_path / "curves" / "m0.tmp" / "plots").mkdir(parents=True)
    train(tiny_model_dir, tmp_path / "m0", curves, dataclasses.replace(FAST, max_steps=3))
    assert list(files(curves)) == FILES and not (tmp_path / "curves" / "m0.tmp").exists()
    assert [s for s, _ in curve(curves, "loss")] == [1, 2, 3]  # three steps, not 6 + 3
    # the first run again elsewhere: byte for byte the same curves (no timestamps in dvclive's rows)
    train(tiny_model_dir, tmp_path / "again", tmp_path / "again_curves")
    assert files(tmp_path / "again_curves") == first


def _hooks(callback: CurvesCallback, tmp_path: Path, main: bool) -> None:
    """The callback's hooks as the Trainer calls them in a 2-step run, on the main process or another one."""
    args = TrainingArguments(output_dir=str(tmp_path / "scratch"), use_cpu=True, report_to="none")
    state, control = TrainerState(is_world_process_zero=main, is_local_process_zero=main), TrainerControl()
    callback.on_train_begin(args, state, control)
    for step in (1, 2):
        state.global_step = step
        callback.on_log(args, state, control, logs={"loss": 3.0 - step, "grad_norm": 0.5, "learning_rate": 1e-3,
                                                    "epoch": step / 2})
    callback.on_log(args, state, control, logs={"train_runtime": 1.5, "train_loss": 1.5, "epoch": 1.0})
    callback.on_train_end(args, state, control)


def test_only_the_main_process_writes_curves(tmp_path):
    other = CurvesCallback(tmp_path / "other")
    _hooks(other, tmp_path, main=False)
    assert other.live is None and not (tmp_path / "other").exists()
    main = CurvesCallback(tmp_path / "main")
    _hooks(main, tmp_path, main=True)
    assert list(files(tmp_path / "main")) == FILES  # no train_runtime.tsv: the summary is no point
    assert curve(tmp_path / "main", "loss") == [(1, 2.0), (2, 1.0)]


@pytest.mark.parametrize("case", ["dvc exp run in a repository without commits", "a git repository without DVC"])
def test_dvclive_writes_its_files_and_leaves_the_repository_alone(case, tmp_path, monkeypatch):
    """`git init`, `dvc init` and `dvc repro` before any commit is how bench/pipeline.py's workspace
    runs the pipeline: dvclive's own repository integration stops there (scm.get_rev of an empty
    repository), and in a git repository without DVC it runs `dvc init`."""
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    if case.startswith("dvc exp run"):
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=ws, check=True)
        (ws / "dvc.yaml").write_text("stages: {}\n")
        # what `dvc exp run` sets for a stage's command
        monkeypatch.setenv("DVC_ROOT", str(ws))
        monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0" * 40)
        monkeypatch.setenv("DVC_EXP_NAME", "curves-test")
    def state() -> tuple[list[str], str]:
        """The files (DVC's tmp aside) and what git has staged."""
        tree = sorted(p.relative_to(ws).as_posix() for p in ws.rglob("*") if ".dvc/tmp" not in p.as_posix())
        return tree, subprocess.run(["git", "diff", "--cached", "--name-status"], cwd=ws, capture_output=True,
                                    text=True).stdout

    before = state()
    monkeypatch.chdir(ws)
    _hooks(CurvesCallback(ws / "curves"), tmp_path, main=True)
    assert curve(ws / "curves", "loss") == [(1, 2.0), (2, 1.0)]
    shutil.rmtree(ws / "curves")
    assert state() == before  # no dvc.yaml, no .dvc, no report, nothing git-added: only the curves
    assert subprocess.run(["git", "for-each-ref", "refs/exps"], cwd=ws, capture_output=True, text=True).stdout == ""


def test_every_training_stage_writes_its_curves_as_an_uncached_output_that_the_plots_draw():
    dvc = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
    stages = {"backward": dvc["stages"]["train_backward"], "m0": dvc["stages"]["train_m0"],
              "${key}": dvc["stages"]["train"]["do"]}
    plotted = {}
    for plot in dvc["plots"]:
        if isinstance(plot, dict):
            (name, spec), = plot.items()
            for path, field in (spec.get("y") or {}).items() if isinstance(spec.get("y"), dict) else []:
                plotted.setdefault(name, set()).add((path, field))
    for model, stage in stages.items():
        curves = f"metrics/train/curves/{model}"
        assert f"--curves {curves}" in " ".join(stage["cmd"].split()), model
        outs = {next(iter(o)) if isinstance(o, dict) else o: o for o in stage["outs"]}
        assert outs[curves] == {curves: {"cache": False}}, model  # beside metrics/train/<model>.json, in git
    for name in CURVES:
        assert plotted[f"train_{name}"] == {(f"metrics/train/curves/{m}/plots/metrics/{name}.tsv", name)
                                            for m in ("backward", "m0", "it1", "it2")}


def _stage_workspace(tmp_path: Path, tiny_model_dir: Path, params: str) -> None:
    """A project folder a training stage runs in: models/base, the seed pairs and a params file."""
    (tmp_path / "models").mkdir()
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "base")
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    PAIRS.write_parquet(tmp_path / "data/prepared/seed.parquet")
    (tmp_path / "params.yaml").write_text(params)


def test_the_stage_writes_curves_where_dvc_yaml_says(tiny_model_dir, tmp_path, monkeypatch):
    _stage_workspace(tmp_path, tiny_model_dir,
        "train:\n  max_steps: 5\n  batch_size: 2\n  small_data_batch_size: 2\n  per_device_batch_size: 2\n"
        "  max_seq_len: 48\n  bf16: false\n")  # logging_steps left at its default: every step
    monkeypatch.chdir(tmp_path)
    dvc_stage.run("train_backward")
    m = json.loads(Path("metrics/train/backward.json").read_text())
    assert [s for s, _ in curve(Path("metrics/train/curves/backward"), "loss")] == list(range(1, m["steps"] + 1))
    assert m["steps"] == 5


@pytest.mark.slow  # two processes, each importing torch and transformers: about 30 s on 2 cores
def test_under_two_processes_one_writer_logs_the_mean_loss_once_per_step(tiny_model_dir, tmp_path):
    """A real 2-process DDP run on CPU (gloo), launched as accelerate's multi-process launcher does."""
    _stage_workspace(tmp_path, tiny_model_dir,
        "train:\n  max_steps: 4\n  batch_size: 2\n  small_data_batch_size: 2\n  per_device_batch_size: 1\n"
        "  max_seq_len: 48\n  bf16: false\n  cpu_threads: 1\n")
    script, *args = dvc_stage.command("train_m0")[1:]
    env = {**os.environ, "PYTHONSAFEPATH": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", script, *args],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics/train/m0.json").read_text())
    assert m["processes"] == 2 and m["steps"] == 4
    curves = tmp_path / "metrics/train/curves/m0"
    assert list(files(curves)) == FILES
    loss = curve(curves, "loss")
    assert [s for s, _ in loss] == [1, 2, 3, 4]
    assert (loss[0][1], loss[-1][1]) == (m["train_loss_first"], m["train_loss_last"])  # the mean over processes


@pytest.mark.slow  # dvc repro, dvc exp run and dvc plots in a scratch project: about a minute
def test_dvc_plots_show_and_diff_draw_the_curves(tiny_model_dir, tmp_path):
    """The project's own training stages and curve plots (backward and m0) in a new DVC project."""
    ws = tmp_path / "ws"
    shutil.copytree(ROOT / "src", ws / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "stages", ws / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".gitignore", ws / ".gitignore")
    shutil.copytree(tiny_model_dir, ws / "models" / "base")
    (ws / "data" / "prepared").mkdir(parents=True)
    PAIRS.write_parquet(ws / "data/prepared/seed.parquet")
    (ws / "params.yaml").write_text(
        "train:\n  max_steps: 5\n  batch_size: 2\n  small_data_batch_size: 2\n  per_device_batch_size: 2\n"
        "  max_seq_len: 48\n  bf16: false\n  learning_rate: 0.005\n  cpu_threads: 1\nprompts: {}\n")
    yaml = YAML()
    full = yaml.load((ROOT / "dvc.yaml").read_text())
    stages = {k: full["stages"][k] for k in ("train_backward", "train_m0")}
    for stage in stages.values():
        stage["params"] = ["train"]
    plots = [p for p in full["plots"] if isinstance(p, dict) and next(iter(p)).startswith("train_")]
    with open(ws / "dvc.yaml", "w") as f:
        yaml.dump({"plots": plots, "stages": stages}, f)
    dvc_yaml = (ws / "dvc.yaml").read_text()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ws / "src"), str(ws)]), "TOKENIZERS_PARALLELISM": "false"}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]

    def run(*cmd: str) -> str:
        r = subprocess.run(list(cmd), cwd=ws, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{cmd}: {r.stderr[-3000:]}"
        return r.stdout

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "repro")
    assert (ws / "dvc.yaml").read_text() == dvc_yaml  # dvclive left it alone

    def points(shown: dict) -> dict:
        """(plot, revision, model) -> the plotted (step, value) pairs."""
        out: dict = {}
        for name, plots in shown["data"].items():
            for plot in plots:
                for v in plot["content"]["data"]["values"]:
                    field = name.removeprefix("train_")
                    out.setdefault((name, v["rev"], v["filename"].split("/")[0]), []).append(
                        (int(v["step"]), float(v[field])))
        return out

    shown = points(json.loads(run(sys.executable, "-m", "dvc", "plots", "show", "--json")))
    for name in CURVES:
        for model in ("backward", "m0"):
            assert shown[(f"train_{name}", "workspace", model)] == curve(ws / f"metrics/train/curves/{model}", name)
    run(*git, "add", "-A")
    run(*git, "commit", "-qm", "trained")
    run(sys.executable, "-m", "dvc", "exp", "run", "-n", "lower-lr", "-S", "train.learning_rate=0.001")
    diff = points(json.loads(run(sys.executable, "-m", "dvc", "plots", "diff", "lower-lr", "HEAD", "--json")))
    lr = {rev: diff[("train_learning_rate", rev, "m0")] for rev in ("lower-lr", "HEAD")}
    assert [s for s, _ in lr["HEAD"]] == [1, 2, 3, 4, 5] == [s for s, _ in lr["lower-lr"]]
    assert max(v for _, v in lr["HEAD"]) == pytest.approx(5e-3) and max(v for _, v in lr["lower-lr"]) == pytest.approx(1e-3)

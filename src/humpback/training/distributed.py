"""How this training process was launched, and what it can hold, decided before any weight is loaded.

`accelerate launch` tells the script how to train through environment variables (WORLD_SIZE,
ACCELERATE_USE_FSDP, ACCELERATE_USE_DEEPSPEED, FSDP_*); the transformers Trainer reads the same
ones. A plain `python stages/train.py` sets none of them and trains in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from humpback.errors import ConfigError

# full fine-tuning with AdamW keeps fp32 weights, gradients and two moments: 16 bytes a parameter,
# before any activation (bf16 autocast keeps the fp32 master weights)
FULL_BYTES_PER_PARAMETER = 16


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "y", "on")


@dataclass(frozen=True)
class Launch:
    world_size: int  # processes over all machines
    sharding: str | None  # "fsdp" or "deepspeed": the model's state is split over the processes
    fsdp_ram_efficient: bool  # FSDP broadcasts the main process's weights: the others need none
    fsdp_state_dict: str  # how FSDP gathers the model to save it
    zero3_unsaveable: bool  # ZeRO-3 without zero3_save_16bit_model: the Trainer would write no weights


def launch() -> Launch:
    """What the launcher set for this process (nothing: one process, no sharding)."""
    sharding = "fsdp" if _flag("ACCELERATE_USE_FSDP") else "deepspeed" if _flag("ACCELERATE_USE_DEEPSPEED") else None
    return Launch(
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        sharding=sharding,
        fsdp_ram_efficient=sharding == "fsdp" and _flag("FSDP_CPU_RAM_EFFICIENT_LOADING"),
        fsdp_state_dict=os.environ.get("FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT"),
        # set from the accelerate config's deepspeed_config; a DeepSpeed JSON file decides for itself
        zero3_unsaveable=(sharding == "deepspeed" and "ACCELERATE_DEEPSPEED_CONFIG_FILE" not in os.environ
                          and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
                          and not _flag("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL")),
    )


def parameter_count(config) -> int:
    """The model's parameters, exactly, from its config: built on the meta device, nothing is
    read or allocated (7B: well under a second)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def check_launch(base: str, mode: str, config, run: Launch) -> None:
    """Stop, before any weight is loaded, a run that cannot work as launched."""
    import torch

    if run.sharding == "fsdp" and "FULL_STATE_DICT" not in run.fsdp_state_dict:
        # the Trainer saves an FSDP model only from a full state dict; any other type would leave no weights
        raise ConfigError(f"fsdp_state_dict_type {run.fsdp_state_dict}: the final model is saved from the "
                          "gathered weights only; set fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config")
    if run.zero3_unsaveable:
        raise ConfigError("DeepSpeed ZeRO-3 without zero3_save_16bit_model: the final model could not be gathered "
                          "into one checkpoint; set zero3_save_16bit_model: true in the accelerate config")
    if not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    if "WORLD_SIZE" not in os.environ and gpus > 1:
        # the Trainer would wrap the model in torch.nn.DataParallel over every GPU and multiply the
        # micro-batch by their number: a different effective batch than train.batch_size says
        raise ConfigError(f"{gpus} GPUs are visible but the training stage was not started by `accelerate launch`: "
                          f"the Trainer would use DataParallel and take {gpus} times the batch params set; launch it with `accelerate launch "
                          f"--config_file configs/accelerate/ddp.yaml --num_processes {gpus}` (fsdp.yaml or "
                          "deepspeed_zero3.yaml for full fine-tuning), or make one GPU visible (CUDA_VISIBLE_DEVICES=0)")
    if mode != "full" or run.sharding:
        return
    total = torch.cuda.get_device_properties(int(os.environ.get("LOCAL_RANK", "0"))).total_memory
    params = parameter_count(config)
    need = params * FULL_BYTES_PER_PARAMETER
    if need > total:
        raise ConfigError(f"train.mode full: {base} has {params / 1e9:.1f}B parameters, whose fp32 weights, gradients "
                          f"and AdamW state need about {need / 2**30:.0f} GiB, more than the {total / 2**30:.0f} GiB "
                          "of one GPU; launch the stage with `accelerate launch --config_file "
                          "configs/accelerate/fsdp.yaml` (or deepspeed_zero3.yaml) to shard it over several GPUs, "
                          "or set train.mode: lora")

"""One fine-tuning run: base model + examples -> a LoRA adapter or a full checkpoint in `out`.

The same code runs on one CPU, one GPU, or many GPUs under `accelerate launch` (DDP, FSDP,
DeepSpeed ZeRO-3): the transformers Trainer reads the launcher's environment. The training
arguments exist before the model is loaded, because loading depends on them: under ZeRO-3 they hold
the DeepSpeed config that makes `from_pretrained` partition the weights as it reads them. Only the
final model lands in `out`: trainer scratch goes to a temporary directory, and the model is written
to `out.tmp` and renamed into place, so an interrupted run leaves no half model. With `curves`, the
loss, learning rate and gradient norm of every logged step are written there by dvclive
(training.curves), and put in place after the model.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments, set_seed

from humpback.errors import ConfigError
from humpback.hardware import cpu_has_bf16, set_cpu_threads
from humpback.io import write_json
from humpback.models import META, load_tokenizer, resolve
from humpback.training.config import LoraSettings, TrainConfig
from humpback.training.curves import CurvesCallback, publish
from humpback.training.data import Collator, Example, TokenizedDataset, tokenize_all
from humpback.training.distributed import Launch, check_launch, launch
from humpback.training.loss import LabelOnlyLoss, unsupported
from humpback.training.schedule import effective_batch, linear_to_ratio, plan_batches

log = logging.getLogger(__name__)

# config attributes that hold a dropout probability, over the common architectures
DROPOUT_KEYS = (
    "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "hidden_dropout_prob", "attention_probs_dropout_prob",
)
# files a save may leave beside the weights that are not part of the model
NOT_MODEL_FILES = ("training_args.bin", "README.md")


def use_bf16(setting: bool | str) -> bool:
    if setting != "auto":
        return bool(setting)
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def set_dropout(config, p: float) -> dict[str, float]:
    """Set every dropout the architecture has to p; return the old values (restored before saving)."""
    old = {k: getattr(config, k) for k in DROPOUT_KEYS if isinstance(getattr(config, k, None), float | int)}
    for k in old:
        setattr(config, k, p)
    return old


class _Recorder(TrainerCallback):
    """The lr each optimizer step really used, and every logged loss."""

    def __init__(self):
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # after optimizer.step(), before lr_scheduler.step(): the lr this step used
        if optimizer is not None:
            self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


class _Trainer(Trainer):
    """The Trainer with our schedule (linear warmup, then linear decay to final_lr_ratio * peak) and,
    with label_only, the loss from the head at labelled positions only (training.loss)."""

    def __init__(self, *args, warmup_ratio: float, final_lr_ratio: float, label_only: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._warmup_ratio, self._final_ratio = warmup_ratio, final_lr_ratio
        self._label_only = None
        if label_only:
            # Sharded runs gather the head's weight in hooks this path has not been run under yet
            why = ("the run is sharded (FSDP / DeepSpeed)" if self.is_fsdp_enabled or self.is_deepspeed_enabled
                   else unsupported(self.model))
            if why:
                log.warning("train.loss_positions=labelled: the model's own loss is used instead, as %s", why)
            else:
                self._label_only = LabelOnlyLoss(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._label_only is None or return_outputs:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        total, count = self._label_only.loss_sum(model, inputs["input_ids"], inputs.get("attention_mask"), inputs["labels"])
        if num_items_in_batch is None:  # the Trainer divides by the accumulation steps itself
            return total / max(count, 1)
        # normalised as the model's own loss is: by the labelled tokens of the whole accumulated
        # batch, on every process (the Trainer's average_tokens_across_devices)
        loss = total / num_items_in_batch
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes
        return loss

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            warmup = math.ceil(self._warmup_ratio * num_training_steps)
            self.lr_scheduler = linear_to_ratio(optimizer or self.optimizer, num_training_steps, warmup, self._final_ratio)
            self._created_lr_scheduler = True
        return self.lr_scheduler


def _base_config(base: str, cfg: TrainConfig):
    """The base's config with the training dropout, the values it replaced, and the dtype it is stored in."""
    config = AutoConfig.from_pretrained(base)
    saved_dtype = getattr(config, "dtype", None) or torch.float32  # read before loading in fp32 changes it
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype, torch.float32)
    restore = set_dropout(config, cfg.dropout)
    return config, restore, saved_dtype


def _load_model(base: str, config, cfg: TrainConfig, args: TrainingArguments, run: Launch):
    """The model to train, loaded the way this launch needs it. `args` must exist (and stay alive)
    first: under ZeRO-3 it holds the DeepSpeed config through which transformers' from_pretrained
    partitions every weight as it loads (zero.Init, only rank 0 reading the checkpoint)."""
    if run.fsdp_ram_efficient and args.process_index != 0:
        # FSDP with cpu_ram_efficient_loading: accelerate shards the model on the meta device and
        # broadcasts the main process's weights, so the others read none (a 7B model in fp32 is
        # 28 GB of host memory a process). Buffers stay real: accelerate keeps each process's own.
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.tie_weights()
    else:
        # One process per GPU that holds the whole model (one GPU, DDP): straight onto its GPU, with
        # no host copy. FSDP and ZeRO-3 place the weights themselves.
        device_map = {"": args.device} if args.device.type == "cuda" and not run.sharding else None
        # fp32 master weights; bf16 comes from autocast, so the optimizer never rounds updates away
        model = AutoModelForCausalLM.from_pretrained(base, config=config, dtype=torch.float32, device_map=device_map)
    model.config.use_cache = False
    if cfg.mode != "lora":
        return model
    model = with_lora(model, cfg.lora)
    if args.bf16 and run.sharding is None:  # FSDP and ZeRO flatten weights that must share one dtype
        frozen_linears_in(model, torch.bfloat16)
    return model


def frozen_linears_in(model, dtype) -> int:
    """Store the frozen weights of `model`'s linear layers in `dtype`, the dtype autocast casts them to
    at every use: the same products without a cast per layer per step (measured: 4% of a CPU step),
    and half the memory. The output head stays (many models tie it to the input embedding), and so do
    norms, embeddings and the trainable adapters. Returns the number of layers changed."""
    head = model.get_output_embeddings()
    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head and not module.weight.requires_grad \
                and module.weight.dtype != dtype:
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None and not module.bias.requires_grad:
                module.bias.data = module.bias.data.to(dtype)
            changed += 1
    return changed


def with_lora(model, settings: LoraSettings):
    """The model with fresh LoRA adapters (drawn from torch's RNG) on `settings.target_modules`."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(task_type="CAUSAL_LM", r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.target_modules)
    return get_peft_model(model, lora)


def train_model(examples: list[Example], base_dir: str | Path, out: str | Path, cfg: TrainConfig,
                curves: str | Path | None = None) -> dict:
    """Fine-tune the base model in `base_dir` on `examples`; write the result to `out` and, with
    `curves`, the training curves to that directory; return metrics."""
    set_seed(cfg.seed)  # before the LoRA weights are drawn
    set_cpu_threads(cfg.cpu_threads)
    ref = resolve(base_dir)
    if ref.adapter:
        raise ConfigError(f"{base_dir}: the base to fine-tune is itself an adapter; train from the base model")
    tokenizer = load_tokenizer(ref)
    tokenized, stats = tokenize_all(tokenizer, [e for e in examples], cfg.max_seq_len)
    run = launch()
    world = run.world_size
    eff = effective_batch(len(tokenized), cfg.batch_size, cfg.small_data_batch_size, cfg.small_data_threshold)
    plan = plan_batches(eff, cfg.per_device_batch_size, world)
    bf16 = use_bf16(cfg.bf16)
    log.info("%d examples (%d tokens), effective batch %d = %d x %d accumulation x %d processes, %s, bf16=%s",
             len(tokenized), stats.tokens, plan.effective, plan.per_device, plan.accumulation, world, cfg.mode, bf16)

    config, dropout_restore, saved_dtype = _base_config(ref.base, cfg)
    check_launch(ref.base, cfg.mode, config, run)
    recorder = _Recorder()
    scratch = tempfile.mkdtemp(prefix="humpback-train-")
    try:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=plan.per_device,
            gradient_accumulation_steps=plan.accumulation,
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm,
            bf16=bf16,
            activation_checkpointing=cfg.gradient_checkpointing,
            use_cpu=not torch.cuda.is_available(),
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            logging_steps=cfg.logging_steps,
            logging_first_step=True,
            save_strategy="no",
            report_to="none",
            seed=cfg.seed,
            data_seed=cfg.seed,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            ddp_find_unused_parameters=False,
        )
        model = _load_model(ref.base, config, cfg, args, run)
        # ZeRO-3 leaves each process an empty slice of every weight; ds_numel is the weight's size
        trainable = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
        callbacks = [recorder] + ([CurvesCallback(Path(scratch) / "curves")] if curves is not None else [])
        trainer = _Trainer(
            model=model,
            args=args,
            train_dataset=TokenizedDataset(tokenized),
            data_collator=Collator(tokenizer.pad_token_id),
            callbacks=callbacks,
            warmup_ratio=cfg.warmup_ratio,
            final_lr_ratio=cfg.final_lr_ratio,
            label_only=cfg.loss_positions == "labelled",
        )
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        _save(trainer, tokenizer, Path(out), str(base_dir), cfg, dropout_restore, saved_dtype)
        if curves is not None and trainer.is_world_process_zero():
            publish(Path(scratch) / "curves", curves)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    epochs_done = float(trainer.state.epoch or 0.0)
    origins = Counter(e.origin for e in examples)
    return {
        "examples": len(tokenized),
        "examples_by_origin": dict(origins),
        "truncated": dict(stats.truncated),
        "dropped": dict(stats.dropped),
        "tokens": stats.tokens,
        "loss_tokens": stats.loss_tokens,
        "mode": cfg.mode,
        "loss_positions": "labelled" if trainer._label_only is not None else "all",
        "trainable_parameters": trainable,
        "bf16": bf16,
        "max_seq_len": cfg.max_seq_len,
        "steps": trainer.state.global_step,
        "epochs": round(epochs_done, 4),
        "effective_batch": plan.effective,
        "per_device_batch": plan.per_device,
        "gradient_accumulation": plan.accumulation,
        "processes": world,
        "train_loss_mean": float(result.training_loss),
        "train_loss_first": recorder.losses[0] if recorder.losses else None,
        "train_loss_last": recorder.losses[-1] if recorder.losses else None,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(stats.tokens * epochs_done / seconds, 1) if seconds > 0 else None,
        "lr_peak": cfg.learning_rate,
        "lr_first": recorder.lrs[0] if recorder.lrs else None,
        "lr_max": max(recorder.lrs) if recorder.lrs else None,
        "lr_last": recorder.lrs[-1] if recorder.lrs else None,
        "final_lr_ratio": cfg.final_lr_ratio,
        "warmup_ratio": cfg.warmup_ratio,
        "seed": cfg.seed,
    }


def _sort_target_modules(path: Path) -> None:
    """PEFT writes `target_modules` in set order, which differs between processes: sorted, identical
    weights give an identical adapter directory, so DVC does not re-run every stage downstream."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    write_json(config, path)


# the bytes of one element of each dtype safetensors stores
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                      "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
_SAFETENSORS_FLOAT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def _store_in_dtype(directory: Path, dtype: torch.dtype) -> None:
    """Rewrite the floating-point weights of the checkpoint in `directory` in `dtype`, and the dtype
    its config names. A sharded save (FSDP, ZeRO-3) writes the weights as the processes gathered
    them (FSDP: the fp32 master weights), not in the base's dtype. Files already in `dtype` are
    left as they are."""
    rewritten = False
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            metadata, names = f.metadata(), list(f.keys())
            stored = {name: f.get_slice(name).get_dtype() for name in names}
            if all(_SAFETENSORS_FLOAT.get(d, dtype) == dtype for d in stored.values()):
                continue
            # tensor by tensor: one file's weights in `dtype` in memory, never all of them in fp32
            tensors = {name: f.get_tensor(name).to(dtype) if stored[name] in _SAFETENSORS_FLOAT else f.get_tensor(name)
                       for name in names}
        partial = path.with_name(path.name + ".partial")
        save_file(tensors, partial, metadata=metadata)
        partial.replace(path)
        rewritten = True
    if not rewritten:
        return
    index = directory / "model.safetensors.index.json"
    if index.is_file():  # its total_size counts the bytes of every tensor, which the cast changed
        content = json.loads(index.read_text(encoding="utf-8"))
        content.setdefault("metadata", {})["total_size"] = _tensor_bytes(directory)
        write_json(content, index)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["dtype"] = str(dtype).removeprefix("torch.")
    write_json(config, config_path)


def _tensor_bytes(directory: Path) -> int:
    total = 0
    for path in directory.glob("*.safetensors"):
        with safe_open(path, framework="pt") as f:
            for name in list(f.keys()):  # safe_open is not iterable
                piece = f.get_slice(name)
                total += math.prod(piece.get_shape()) * _SAFETENSORS_BYTES[piece.get_dtype()]
    return total


def _save(trainer: Trainer, tokenizer, out: Path, base_dir: str, cfg: TrainConfig, dropout_restore: dict, dtype) -> None:
    """Write only the model (adapter or checkpoint), its tokenizer and humpback_model.json; never optimizer state.
    A full checkpoint is stored in the base model's dtype (bf16 halves it), however it was trained."""
    main = trainer.is_world_process_zero()
    staging = out.with_name(out.name + ".tmp")
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    trainer.accelerator.wait_for_everyone()
    model = trainer.accelerator.unwrap_model(trainer.model)
    base_config = model.get_base_model().config if cfg.mode == "lora" else model.config
    for k, v in dropout_restore.items():  # the saved config describes the model, not the training run
        setattr(base_config, k, v)
    base_config.use_cache = True
    full = cfg.mode == "full" and isinstance(dtype, torch.dtype)
    sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    if sharded:
        trainer.save_model(str(staging))  # collective: gathers the sharded weights on the main process
    elif main:
        if full:
            model.to(dtype)  # written once, already in the base's dtype
        model.save_pretrained(staging)
    if main:
        if full and sharded:  # the gathered weights come in the dtype they were trained in
            _store_in_dtype(staging, dtype)
        tokenizer.save_pretrained(staging)
        if cfg.mode == "lora":
            _sort_target_modules(staging / "adapter_config.json")
        for name in NOT_MODEL_FILES:
            (staging / name).unlink(missing_ok=True)
        meta = {"kind": "adapter", "base": base_dir} if cfg.mode == "lora" else {"kind": "checkpoint", "trained_from": base_dir}
        write_json(meta, staging / META)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    trainer.accelerator.wait_for_everyone()

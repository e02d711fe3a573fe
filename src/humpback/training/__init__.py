"""Fine-tuning for every training stage (backward model, M0, M1, M2, ...): see trainer.train_model."""

from humpback.training.config import LoraSettings, TrainConfig
from humpback.training.data import KINDS, Example, build_examples, read_pairs, tokenize_all, tokenize_example
from humpback.training.schedule import BatchPlan, effective_batch, lr_factor, plan_batches
from humpback.training.trainer import train_model

__all__ = [
    "KINDS", "BatchPlan", "Example", "LoraSettings", "TrainConfig", "build_examples", "effective_batch",
    "lr_factor", "plan_batches", "read_pairs", "tokenize_all", "tokenize_example", "train_model",
]

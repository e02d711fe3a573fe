"""The causal LM loss from the output head applied at labelled positions only.

A model's own loss applies the head to every position and takes log-softmax over the whole
vocabulary there, then drops the prompt positions. The reply is a small share of the tokens for the
backward model (a short instruction after a whole document), so most of that work is thrown away.
Here the decoder runs as usual, a forward hook takes its last hidden state, and the head and the
cross-entropy run on the positions whose next token is labelled, a chunk of positions at a time:
positions x vocabulary never exists for the whole batch, and under autograd each chunk's logits are
recomputed in the backward pass instead of kept.

The hook runs inside the top-level forward, so what wraps that forward (autocast, DDP) applies to
the head too. Architectures that change the logits after the head (soft-capping, scaling) keep the
model's own loss, and so do sharded runs (the trainer decides).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from humpback.training.data import IGNORE

# config attributes of architectures whose logits are not just head(hidden state)
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
CHUNK_TOKENS = 1024  # positions per head application: 1024 x a 150k vocabulary in fp32 is 600 MB


def _causal_lm(model):
    """The transformers CausalLM inside PEFT and distributed wrappers."""
    while hasattr(model, "module"):  # DDP / DataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    return model


def unsupported(model) -> str | None:
    """Why the label-only loss cannot stand in for this model's own loss, or None."""
    lm = _causal_lm(model)
    config = getattr(lm, "config", None)
    for key in LOGIT_TRANSFORMS:
        value = getattr(config, key, None)
        if value not in (None, 1, 1.0, 0, 0.0):
            return f"its logits are transformed after the head ({key}={value})"
    try:
        decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return "it names no decoder or output head"
    if decoder is None or decoder is lm or not isinstance(head, torch.nn.Linear):
        return "it names no separate decoder and linear output head"
    if "logits_to_keep" not in inspect.signature(lm.forward).parameters:
        return "its forward has no logits_to_keep"
    return None


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask over positions 0..T-2 whose next token is labelled, those next tokens)."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    return mask, targets[mask]


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # the head is called as a module, not through its weight, so any hook on it (PEFT, a wrapper) runs
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def chunked_loss_sum(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
                     chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Sum of the cross-entropy of head(hidden[i]) against targets[i], `chunk` rows at a time."""
    total = hidden.new_zeros((), dtype=torch.float32)
    recompute = torch.is_grad_enabled() and hidden.shape[0] > chunk
    for start in range(0, hidden.shape[0], chunk):
        args = (head, hidden[start:start + chunk], targets[start:start + chunk])
        # one chunk's logits alive at a time: rebuilt in the backward pass rather than kept
        total = total + (checkpoint(_chunk_loss, *args, use_reentrant=False) if recompute else _chunk_loss(*args))
    return total


class LabelOnlyLoss:
    """Attach to a CausalLM (bare, PEFT-wrapped or distributed) once; then `loss_sum` runs one
    forward and returns (summed cross-entropy over labelled positions, their count)."""

    def __init__(self, model, chunk: int = CHUNK_TOKENS):
        why = unsupported(model)
        if why:
            raise ValueError(f"the label-only loss does not fit this model: {why}")
        lm = _causal_lm(model)
        self.head = lm.get_output_embeddings()
        self.chunk = chunk
        self._targets: tuple[torch.Tensor, torch.Tensor] | None = None
        self._result: torch.Tensor | None = None
        self._handle = lm.get_decoder().register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if self._targets is None:
            return
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        mask, targets = self._targets
        self._result = chunked_loss_sum(hidden[:, :-1][mask], self.head, targets, self.chunk)

    @contextmanager
    def _armed(self, labels: torch.Tensor):
        self._targets, self._result = label_positions(labels), None
        try:
            yield
        finally:
            self._targets = None

    def loss_sum(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        with self._armed(labels):
            count = int(self._targets[0].sum())
            # the head runs on one position only; the loss comes from the hook
            model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, use_cache=False)
        if self._result is None:
            raise RuntimeError("the decoder's forward hook did not run: the model does not call its decoder")
        return self._result, count

    def remove(self) -> None:
        self._handle.remove()

"""The label-only loss equals the model's own loss, and its gradients equal the model's, on several
architectures, with and without LoRA, in chunks or whole."""

from __future__ import annotations

import pytest
import torch
import transformers
from peft import LoraConfig, get_peft_model

from humpback.training.data import IGNORE
from humpback.training.loss import LabelOnlyLoss, chunked_loss_sum, unsupported

VOCAB = 97
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, attention_dropout=0.0)
ARCHITECTURES = {
    "llama": lambda: transformers.LlamaConfig(**SMALL, tie_word_embeddings=True),
    "qwen2": lambda: transformers.Qwen2Config(**SMALL, tie_word_embeddings=False),
    "mistral": lambda: transformers.MistralConfig(**SMALL),
    "gemma": lambda: transformers.GemmaConfig(**SMALL, head_dim=8),
}


def _model(arch: str, lora: bool = False):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(ARCHITECTURES[arch](), dtype=torch.float32)
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    return model.train()


def _batch():
    """Two right-padded rows: a long prompt with a short reply, and a short prompt with a long reply."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 20), generator=g)
    labels = torch.full_like(ids, IGNORE)
    labels[0, 15:18] = ids[0, 15:18]  # 3 reply tokens, then padding
    labels[1, 4:20] = ids[1, 4:20]
    mask = torch.ones_like(ids)
    mask[0, 18:] = 0
    return ids, mask, labels


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_the_label_only_loss_and_gradients_equal_the_models_own(arch, lora):
    model = _model(arch, lora)
    ids, mask, labels = _batch()
    reference = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    reference.backward()
    expected = _grads(model)

    loss = LabelOnlyLoss(model, chunk=4)  # 19 labelled positions: five chunks, recomputed in backward
    total, count = loss.loss_sum(model, ids, mask, labels)
    assert count == 3 + 16  # every reply token, the first predicted from the prompt's last position
    (total / count).backward()
    got = _grads(model)
    assert torch.allclose(total / count, reference, atol=1e-5)
    assert got.keys() == expected.keys() and got
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5, rtol=1e-4), name


def test_chunks_do_not_change_the_sum_or_its_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, VOCAB, bias=True)
    hidden = torch.randn(23, 8, requires_grad=True)
    targets = torch.randint(0, VOCAB, (23,))
    results = []
    for chunk in (1, 5, 23, 1000):
        total = chunked_loss_sum(hidden, head, targets, chunk)
        total.backward()
        results.append((total.detach(), hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone()))
        hidden.grad = head.weight.grad = head.bias.grad = None
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.allclose(a, b, atol=1e-5)


def test_the_hook_leaves_plain_forwards_alone():
    model = _model("llama")
    ids, mask, labels = _batch()
    loss = LabelOnlyLoss(model)
    out = model(input_ids=ids, attention_mask=mask)  # not armed: the model's own logits, no loss taken
    assert out.logits.shape == (2, 20, VOCAB)
    loss.remove()
    assert not model.model._forward_hooks


def test_architectures_that_transform_their_logits_keep_their_own_loss():
    config = transformers.Gemma2Config(**SMALL, head_dim=8, final_logit_softcapping=30.0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    assert "final_logit_softcapping" in unsupported(model)
    with pytest.raises(ValueError, match="does not fit this model"):
        LabelOnlyLoss(model)
    assert unsupported(_model("llama", lora=True)) is None

"""CPU inference attention: decoding steps get an explicit mask where transformers would pass none,
and the text and scores equal plain SDPA's, on padded and unpadded batches."""

from __future__ import annotations

import pytest

from humpback.engines import cpu_attention


@pytest.fixture()
def models(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    def load(attn="sdpa"):
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attn).eval()
        # a separate random head, so greedy picks vary (tied embeddings repeat the input token)
        m.lm_head.weight = torch.nn.Parameter(torch.randn_like(m.lm_head.weight) * 0.5)
        return m

    return load


def _left_padded(lengths=(5, 17, 11, 2)):
    import torch

    ids = torch.zeros((len(lengths), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    g = torch.Generator().manual_seed(1)
    for row, n in enumerate(lengths):
        ids[row, -n:] = torch.randint(10, 1000, (n,), generator=g)
        mask[row, -n:] = 1
    return ids, mask


def _generate(model, ids, mask):
    import torch
    from transformers import GenerationConfig

    gen = GenerationConfig(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0,
                           output_scores=True, return_dict_in_generate=True)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
    return out.sequences, torch.stack(out.scores)


@pytest.mark.parametrize("lengths", [(5, 17, 11, 2), (9, 9, 9)], ids=["padded", "unpadded"])
def test_same_tokens_and_scores_as_sdpa(models, lengths):
    import torch

    ids, mask = _left_padded(lengths)
    plain_seq, plain_scores = _generate(models("sdpa"), ids, mask)
    hybrid = models("sdpa")
    assert cpu_attention.use_for(hybrid)
    seq, scores = _generate(hybrid, ids, mask)
    assert torch.equal(seq, plain_seq)
    # every step's logits, not only the argmax: a mask applied wrongly to a padded row shows here
    assert torch.allclose(scores, plain_scores, atol=1e-4)


def test_decoding_steps_of_an_unpadded_batch_get_a_mask(models, monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    real = sdpa.sdpa_attention_forward

    def spy(module, query, key, value, attention_mask, **kwargs):
        calls.append((query.shape[2], None if attention_mask is None else tuple(attention_mask.shape)))
        return real(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setattr(sdpa, "sdpa_attention_forward", spy)
    model = models("sdpa")
    cpu_attention.use_for(model)
    ids, mask = _left_padded((9, 9, 9))
    _generate(model, ids, mask)
    layers = model.config.num_hidden_layers
    assert calls[:layers] == [(9, None)] * layers  # the prompt: a causal call with no mask, the fast path
    # each of the 11 later tokens, once per layer, with a mask over every position so far
    assert calls[layers:] == [(1, (3, 1, 1, 9 + k)) for k in range(1, 12) for _ in range(layers)]


def test_other_attention_implementations_are_left_alone(models):
    model = models("eager")
    assert not cpu_attention.use_for(model)
    assert model.config._attn_implementation == "eager"


def test_engine_on_cpu_uses_it(tiny_model_dir):
    from humpback.engines.config import EngineConfig
    from humpback.engines.loader import load_engine

    with load_engine(tiny_model_dir, EngineConfig(backend="transformers", cpu_threads=1, dtype="float32")) as e:
        assert e.model.config._attn_implementation == cpu_attention.NAME

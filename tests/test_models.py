"""Model directories: embedded conversion, tiny builds, pointers and adapters."""

import json

import pytest

from humpback.config import convert
from humpback.errors import ConfigError, InputError
from humpback.models import BaseModelConfig, ModelRef, TinyConfig, load_model, load_tokenizer, prepare_base, resolve


def test_tiny_base_is_a_loadable_checkpoint_with_chat_template(tmp_path):
    ref = prepare_base(BaseModelConfig(source="tiny", tiny=TinyConfig(hidden_size=32, intermediate_size=64)), tmp_path / "base")
    assert ref == ModelRef(base=str(tmp_path / "base"))
    tok = load_tokenizer(ref)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    model = load_model(ref)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert json.loads((tmp_path / "base" / "humpback_model.json").read_text())["source"] == "tiny"


def test_local_path_becomes_a_pointer_not_a_copy(tmp_path):
    src = tmp_path / "my-model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    ref = prepare_base(BaseModelConfig(source=str(src)), tmp_path / "base")
    assert ref.base == str(src.resolve())
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["humpback_model.json"]


def test_hub_id_pointer_and_bad_sources(tmp_path):
    assert prepare_base(BaseModelConfig(source="org/model-7b"), tmp_path / "b").base == "org/model-7b"
    with pytest.raises(ConfigError, match="neither embedded, tiny, an existing path nor a hub id"):
        prepare_base(BaseModelConfig(source="./missing/dir"), tmp_path / "c")
    # the params check says so before any stage runs
    with pytest.raises(ConfigError, match=r"base_model.source: './missing/dir' is neither embedded"):
        convert({"source": "./missing/dir"}, BaseModelConfig, "base_model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no config.json"):
        prepare_base(BaseModelConfig(source=str(empty)), tmp_path / "d")


def test_resolve_adapter_and_errors(tmp_path):
    prepare_base(BaseModelConfig(source="org/model-7b"), tmp_path / "base")
    ad = tmp_path / "m0"
    ad.mkdir()
    (ad / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match="without humpback_model.json"):
        resolve(ad)
    (ad / "humpback_model.json").write_text(json.dumps({"kind": "adapter", "base": str(tmp_path / "base")}))
    assert resolve(ad) == ModelRef(base="org/model-7b", adapter=str(ad))
    with pytest.raises(InputError, match="model directory not found"):
        resolve(tmp_path / "nope")


@pytest.mark.slow
def test_embedded_model_converts_and_answers(tmp_path):
    ref = prepare_base(BaseModelConfig(), tmp_path / "base")
    tok, model = load_tokenizer(ref), load_model(ref)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])

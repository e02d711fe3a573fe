"""Resume fingerprints: a chunked stage never mixes parts written for other rows, params, chunking,
engine or model.

* The contract: every leaf field of every config a chunked stage reads changes its fingerprint,
  unless the stage's allow-list says why it cannot change the output. A field added later is
  covered by default (the settings are built by exclusion), and this test names any that is not.
* Model identity is content: copies agree, a changed byte at the same size and mtime does not,
  an adapter carries its base's identity, a pointer its target's.
* Per stage, on the tiny random Llama through the real transformers engine: killed after the first
  chunk, resumed with one setting changed, the result equals a clean run with the new setting.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import polars as pl
import pytest

from humpback import augment, chunks
from humpback.augment import AugmentConfig, FilterConfig, augment_settings, run_augment
from humpback.chunks import fingerprint, model_identity, process_in_chunks
from humpback.curation import scoring
from humpback.curation.config import ScoreConfig
from humpback.curation.scoring import run_score, score_settings
from humpback.engines.base import Engine, SamplingParams
from humpback.engines.config import EngineConfig
from humpback.evaluation import generate, judge
from humpback.evaluation.config import EvalConfig, JudgeConfig
from humpback.evaluation.generate import generate_answers, generate_settings
from humpback.evaluation.judge import PairwiseJudge, judge_in_chunks, judge_settings
from humpback.models import META
from humpback.prompts import PromptsConfig

ENGINE = EngineConfig(backend="transformers", device="cpu", dtype="float32", batch_size=4, cpu_threads=1)
ROWS = pl.DataFrame({"id": ["a", "b", "c"], "text": ["one", "two", "three"]})

# ---------------------------------------------------------------------------------------------
# the contract: every config leaf is fingerprinted or allow-listed with a reason


def _leaves(obj, path: str) -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        value, p = getattr(obj, f.name), f"{path}.{f.name}"
        out += _leaves(value, p) if dataclasses.is_dataclass(value) else [p]
    return out


def _other(value, hint, name: str):
    """Another valid value for a field."""
    if typing.get_origin(hint) is typing.Literal:
        return next(v for v in typing.get_args(hint) if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if name == "labels":
        return ["A", "B"]
    if isinstance(value, list):
        return [*value, r"\bchanged\b"]
    if name == "device":
        return "cpu" if value != "cpu" else "cuda"
    if name == "base_url":
        return "http://localhost:9/v1" if value != "http://localhost:9/v1" else "http://localhost:8/v1"
    assert isinstance(value, str), f"{name}: add a rule for {type(value).__name__}"
    return value + " (changed)"


def _changed(obj, dotted: str):
    head, _, rest = dotted.partition(".")
    value = getattr(obj, head)
    if rest:
        return dataclasses.replace(obj, **{head: _changed(value, rest)})
    return dataclasses.replace(obj, **{head: _other(value, typing.get_type_hints(type(obj))[head], head)})


def _fp_augment(s, model):
    return fingerprint(ROWS, augment_settings(s["augment"], s["prompts"], s["engine"], model),
                       chunk_size=s["augment"].chunk_size)


def _fp_score(s, model):
    return fingerprint(ROWS, score_settings(s["score"], s["prompts"], s["engine"], model),
                       chunk_size=s["score"].chunk_size)


def _fp_generate(s, model):
    return fingerprint(ROWS, generate_settings(s["eval"], s["prompts"], s["engine"], model, "it1"),
                       chunk_size=s["eval"].chunk_size)


def _fp_judge(s, model):
    return fingerprint(ROWS, judge_settings(s["judge"], s["engine"], model), chunk_size=s["judge"].chunk_size)


# stage -> (the sections it reads, its fingerprint, its allow-list)
STAGES = {
    "augment": (lambda: {"augment": AugmentConfig(), "prompts": PromptsConfig(), "engine": EngineConfig()},
                _fp_augment, lambda s: augment.UNRECORDED),
    "score-logprob": (lambda: {"score": ScoreConfig(mode="logprob"), "prompts": PromptsConfig(),
                               "engine": EngineConfig()}, _fp_score, lambda s: scoring.score_unrecorded(s["score"])),
    "score-generate": (lambda: {"score": ScoreConfig(mode="generate"), "prompts": PromptsConfig(),
                                "engine": EngineConfig()}, _fp_score, lambda s: scoring.score_unrecorded(s["score"])),
    "generate": (lambda: {"eval": EvalConfig(), "prompts": PromptsConfig(), "engine": EngineConfig()},
                 _fp_generate, lambda s: generate.UNRECORDED),
    "judge-local": (lambda: {"judge": JudgeConfig(), "engine": EngineConfig()}, _fp_judge,
                    lambda s: judge.UNRECORDED),
    "judge-endpoint": (lambda: {"judge": JudgeConfig(base_url="http://localhost:8000/v1", model="served"),
                                "engine": EngineConfig()}, _fp_judge, lambda s: judge.UNRECORDED),
}


@pytest.fixture
def model_dirs(tmp_path):
    a, b = tmp_path / "model_a", tmp_path / "model_b"
    for d, weights in ((a, b"weights a"), (b, b"weights b")):
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(weights)
    return a, b


@pytest.mark.parametrize("stage", STAGES)
def test_every_config_field_is_fingerprinted_or_allow_listed(stage, model_dirs):
    sections_of, fp, allowed_of = STAGES[stage]
    base = sections_of()
    allowed = allowed_of(base)
    leaves = [leaf for name, cfg in base.items() for leaf in _leaves(cfg, name)]
    for key, reason in allowed.items():  # an allow-list names real fields, each with its reason
        assert reason.strip(), key
        assert any(leaf == key or leaf.startswith(key + ".") for leaf in leaves), f"{key}: no such field"

    before = fp(base, model_dirs[0])
    assert fp(base, model_dirs[0]) == before  # deterministic
    unrecorded = []
    for leaf in leaves:
        if any(leaf == key or leaf.startswith(key + ".") for key in allowed):
            continue
        section, _, rest = leaf.partition(".")
        changed = {**base, section: _changed(base[section], rest)}
        if fp(changed, model_dirs[0]) == before:
            unrecorded.append(leaf)
    assert not unrecorded, f"{stage}: fields that change the output but not the fingerprint: {unrecorded}"
    if stage != "judge-endpoint":  # an endpoint judge has no local model
        assert fp(base, model_dirs[1]) != before, "the model is not in the fingerprint"


def test_the_row_digest_is_order_sensitive_and_the_same_in_another_process():
    df = pl.DataFrame({"x": [1, 2, 3], "s": ["a", None, "c"], "f": [0.5, 1.5, None]})
    fp = fingerprint(df, {"v": 1}, chunk_size=2)
    assert fingerprint(df.reverse(), {"v": 1}, chunk_size=2) != fp
    assert fingerprint(df, {"v": 1}, chunk_size=3) != fp
    assert fingerprint(df.with_columns(pl.col("x").cast(pl.Int32)), {"v": 1}, chunk_size=2) != fp
    code = ("import polars as pl; from humpback.chunks import fingerprint; "
            "df = pl.DataFrame({'x': [1, 2, 3], 's': ['a', None, 'c'], 'f': [0.5, 1.5, None]}); "
            "print(fingerprint(df, {'v': 1}, chunk_size=2))")
    for seed in ("1", "2"):  # str hashing is salted per process: the digest must not depend on it
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.stdout.strip() == fp


# ---------------------------------------------------------------------------------------------
# process_in_chunks records the chunking and the row order itself


def _tag(chunk: pl.DataFrame, i: int) -> pl.DataFrame:
    return chunk.with_columns(pl.lit(i).alias("chunk"))


def _crash_after(n: int):
    calls = []

    def fn(chunk, i):
        if len(calls) == n:
            raise KeyboardInterrupt  # killed while working on chunk n
        calls.append(i)
        return _tag(chunk, i)

    return fn


def test_a_resume_with_another_chunk_size_recomputes(tmp_path):
    df = pl.DataFrame({"x": list(range(6))})
    with pytest.raises(KeyboardInterrupt):
        process_in_chunks(df, tmp_path / "out.parquet", _crash_after(1), chunk_size=2)
    resumed = process_in_chunks(df, tmp_path / "out.parquet", _tag, chunk_size=4)
    assert resumed.equals(process_in_chunks(df, tmp_path / "clean.parquet", _tag, chunk_size=4))


def test_a_resume_with_reordered_rows_recomputes(tmp_path):
    df = pl.DataFrame({"x": list(range(6))})
    with pytest.raises(KeyboardInterrupt):
        process_in_chunks(df, tmp_path / "out.parquet", _crash_after(1), chunk_size=2)
    resumed = process_in_chunks(df.reverse(), tmp_path / "out.parquet", _tag, chunk_size=2)
    assert resumed.equals(process_in_chunks(df.reverse(), tmp_path / "clean.parquet", _tag, chunk_size=2))


# ---------------------------------------------------------------------------------------------
# model identity by content


def _weights(d: Path) -> Path:
    return next(d.glob("*.safetensors"))


def _flip_a_byte(path: Path) -> None:
    """Change one byte in the middle of the file; keep its size and its mtime."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_model_identity_is_the_content(tiny_model_dir, tmp_path):
    ident = model_identity(tiny_model_dir, ENGINE)
    copy = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere" / "base")
    for p in copy.rglob("*"):
        os.utime(p, (1_000_000_000, 1_000_000_000))  # what a dvc checkout or a plain copy does
    assert model_identity(copy, ENGINE) == ident
    _flip_a_byte(_weights(copy))
    assert model_identity(copy, ENGINE) != ident


def test_adapter_identity_includes_its_base(tiny_model_dir, tiny_lora_dir, tmp_path):
    ident = model_identity(tiny_lora_dir, ENGINE)
    assert model_identity(tiny_model_dir, ENGINE) != ident

    def adapter_over(base: Path, name: str) -> Path:
        d = shutil.copytree(tiny_lora_dir, tmp_path / name)
        (d / META).write_text(f'{{"kind": "adapter", "base": "{base}"}}')
        return d

    same_base = shutil.copytree(tiny_model_dir, tmp_path / "base_copy")
    assert model_identity(adapter_over(same_base, "a1"), ENGINE) == ident  # same base content elsewhere
    other_base = shutil.copytree(tiny_model_dir, tmp_path / "base_retrained")
    _flip_a_byte(_weights(other_base))
    assert model_identity(adapter_over(other_base, "a2"), ENGINE) != ident


def test_pointer_identity_is_its_target(tiny_model_dir, tmp_path):
    def pointer(target: str, name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / META).write_text(f'{{"kind": "pointer", "base": "{target}"}}')
        return d

    local = model_identity(pointer(str(tiny_model_dir), "p1"), ENGINE)
    assert local == {"local": {"pointer": model_identity(tiny_model_dir, ENGINE)["local"]}}
    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    _flip_a_byte(_weights(other))
    assert model_identity(pointer(str(other), "p2"), ENGINE) != local
    assert model_identity(pointer("org/model-7b", "p3"), ENGINE) == {"local": {"pointer": {"hub": "org/model-7b"}}}
    assert model_identity(pointer("org/model-7b", "p4"), ENGINE) != model_identity(pointer("org/model-8b", "p5"), ENGINE)


def test_endpoint_identity_is_the_url_and_the_served_model():
    def endpoint(url, model):
        return dataclasses.replace(ENGINE, backend="openai",
                                   openai=dataclasses.replace(ENGINE.openai, base_url=url, model=model))

    ident = model_identity(None, endpoint("http://a:8000/v1", "big"))
    assert ident == {"endpoint": {"base_url": "http://a:8000/v1", "model": "big"}}
    assert model_identity(None, endpoint("http://b:8000/v1", "big")) != ident
    assert model_identity(None, endpoint("http://a:8000/v1", "bigger")) != ident
    served = JudgeConfig(base_url="http://a:8000/v1", model="big")
    assert judge_settings(served, ENGINE, None)["model"] == ident


# ---------------------------------------------------------------------------------------------
# per stage: killed after the first chunk, resumed with one setting changed


class Killed(Exception):
    pass


class CrashAfter(Engine):
    """The real engine, until `calls` engine calls have been made; then the run dies."""

    def __init__(self, inner: Engine, calls: int):
        self.inner, self.left = inner, calls

    def _tick(self):
        if self.left == 0:
            raise Killed
        self.left -= 1

    def generate(self, requests, sampling, *, desc="generate"):
        self._tick()
        return self.inner.generate(requests, sampling, desc=desc)

    def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
        self._tick()
        return self.inner.choice_logprobs(requests, choices, assistant_prefix=assistant_prefix, desc=desc)


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir):
    from humpback.engines.transformers_engine import TransformersEngine

    with TransformersEngine(tiny_model_dir, ENGINE) as engine:
        yield engine


@pytest.fixture(scope="module")
def lora_engine(tiny_lora_dir):
    from humpback.engines.transformers_engine import TransformersEngine

    with TransformersEngine(tiny_lora_dir, ENGINE) as engine:
        yield engine


TEXTS = ["Boil the egg for nine minutes.", "Rain is condensed vapour.", "A haiku has three lines.",
         "Back up your files twice.", "Interest compounds over time.", "Bread needs flour and water."]
PERMISSIVE = FilterConfig(min_chars=0, min_words=0, max_chars=10**6, max_words=10**6, min_alpha_ratio=0.0,
                          max_repeated_ngram_share=2.0, max_echo_overlap=2.0, meta_patterns=[],
                          assistant_voice_patterns=[])


def test_augment_resumed_with_another_chunk_size(tiny_engine, tiny_model_dir, tmp_path):
    seg = tmp_path / "segments.parquet"
    pl.DataFrame({"segment_id": [f"s{i}" for i in range(6)], "text": TEXTS}).write_parquet(seg)

    def run(engine, chunk_size, out):
        cfg = AugmentConfig(chunk_size=chunk_size, seed=3, sampling=SamplingParams(max_new_tokens=6),
                            filter=PERMISSIVE)
        d = tmp_path / out
        run_augment(seg, engine, cfg, PromptsConfig(), candidates_path=d / "c.parquet",
                    rejected_path=d / "r.parquet", metrics_path=d / "a.json", engine_cfg=ENGINE,
                    model_dir=tiny_model_dir)
        return pl.concat([pl.read_parquet(d / "c.parquet"), pl.read_parquet(d / "r.parquet")], how="diagonal")

    with pytest.raises(Killed):
        run(CrashAfter(tiny_engine, 1), 2, "resumed")
    assert (tmp_path / "resumed" / ".generated.parquet.parts" / "part-00000.parquet").is_file()
    resumed = run(tiny_engine, 3, "resumed")
    assert resumed.height == 6
    assert resumed.equals(run(tiny_engine, 3, "clean"))


def test_score_resumed_with_another_model(tiny_engine, lora_engine, tiny_model_dir, tiny_lora_dir, tmp_path):
    cand = tmp_path / "candidates.parquet"
    pl.DataFrame({"segment_id": [f"s{i}" for i in range(6)], "instruction": [f"What about {t}" for t in TEXTS],
                  "output": TEXTS}).write_parquet(cand)
    cfg = ScoreConfig(mode="logprob", chunk_size=2)

    def run(engine, model, out):
        d = tmp_path / out
        run_score(cand, engine, cfg, PromptsConfig(), scores_path=d / "s.parquet", metrics_path=d / "s.json",
                  engine_cfg=ENGINE, model_dir=model)
        return pl.read_parquet(d / "s.parquet")

    with pytest.raises(Killed):
        run(CrashAfter(tiny_engine, 2), tiny_model_dir, "resumed")  # the logprob probe, then chunk 0
    assert (tmp_path / "resumed" / "s.parquet.parts" / "part-00000.parquet").is_file()
    resumed = run(lora_engine, tiny_lora_dir, "resumed")
    clean = run(lora_engine, tiny_lora_dir, "clean")
    assert not clean.head(2).equals(run(tiny_engine, tiny_model_dir, "base").head(2))  # the models disagree
    assert resumed.equals(clean)


def test_generate_resumed_with_another_top_p(tiny_engine, tiny_model_dir, tmp_path):
    prompts = pl.DataFrame({"prompt_id": [f"p{i}" for i in range(6)], "category": ["general"] * 6,
                            "instruction": [f"Tell me: {t}" for t in TEXTS]})

    def run(engine, top_p, out):
        cfg = EvalConfig(chunk_size=2, sampling=SamplingParams(max_new_tokens=6, top_p=top_p))
        return generate_answers(engine, prompts, tmp_path / out / "it1.parquet", cfg=cfg, prompts_cfg=PromptsConfig(),
                                engine_cfg=ENGINE, model_dir=tiny_model_dir, generator="it1")

    with pytest.raises(Killed):
        run(CrashAfter(tiny_engine, 1), 0.9, "resumed")
    resumed = run(tiny_engine, 0.3, "resumed")
    clean = run(tiny_engine, 0.3, "clean")
    assert not clean.head(2).equals(run(tiny_engine, 0.9, "old").head(2))  # the knob changes the answers
    assert resumed.equals(clean)


def test_judge_resumed_with_another_chunk_size(tiny_engine, tiny_model_dir, tmp_path):
    pairs = pl.DataFrame({"prompt_id": [f"p{i}" for i in range(6)], "category": ["general"] * 6,
                          "instruction": [f"Tell me: {t}" for t in TEXTS], "output": TEXTS,
                          "reference_output": [t.upper() for t in TEXTS]})

    def run(engine, chunk_size, out):
        cfg = JudgeConfig(mode="logprob", chunk_size=chunk_size)
        return judge_in_chunks(pairs, PairwiseJudge(engine, cfg), tmp_path / out / "j.parquet", ENGINE,
                               tiny_model_dir)

    with pytest.raises(Killed):
        run(CrashAfter(tiny_engine, 2), 2, "resumed")  # two calls per chunk: both orders
    resumed = run(tiny_engine, 4, "resumed")
    assert resumed.height == 6
    assert resumed.equals(run(tiny_engine, 4, "clean"))


def test_settings_refuse_values_that_are_not_plain_data():
    with pytest.raises(TypeError, match="not plain data"):
        chunks.fingerprint(ROWS, {"s": {1, 2}}, chunk_size=1)

"""Augment: instruction cleaning, the degenerate filter (each reason), and the resumable runner."""

import json
from pathlib import Path

import dvc_stage
import polars as pl
import pytest

from humpback.augment import (
    AugmentConfig,
    DegenerateFilter,
    FilterConfig,
    clean_instruction,
    echo_overlap,
    load_segments,
    run_augment,
)
from humpback.config import validate_all
from humpback.engines import loader
from humpback.engines.base import Engine, SamplingParams
from humpback.engines.config import EngineConfig
from humpback.errors import ConfigError, EmptyResultError, InputError
from humpback.prompts import PromptsConfig

REPO = Path(__file__).resolve().parents[1]

SEGMENT = (
    "Sourdough needs a lively starter. Feed it twice a day for a week, then mix 500 g flour with "
    "350 g water and 100 g starter, rest it, fold it every half hour and bake it at 240 degrees."
)


# ---------------------------------------------------------------------------------------------
# cleaning


@pytest.mark.parametrize(
    "raw, clean",
    [
        ('"How do I bake sourdough bread at home?"', "How do I bake sourdough bread at home?"),
        ("Instruction: How do I bake sourdough?", "How do I bake sourdough?"),
        ("User request: Explain how a sourdough starter works.", "Explain how a sourdough starter works."),
        ("**Instruction:** Give me a bread recipe.", "Give me a bread recipe."),
        ("Instruction: \"Give me a bread recipe.\"", "Give me a bread recipe."),
        ("“Give me a bread recipe.”", "Give me a bread recipe."),
        ("Give me a bread recipe.<|im_end|>", "Give me a bread recipe."),
        ("Give me a bread recipe.</s>", "Give me a bread recipe."),
        ("Give me a bread recipe.\n\nAssistant: Sure, here it is", "Give me a bread recipe."),
        ("Give me a bread recipe.\nResponse: Sourdough needs", "Give me a bread recipe."),
        ("  Question: Why does bread rise?  \n", "Why does bread rise?"),
        ("", ""),
        (None, ""),
        ('"unbalanced quote', '"unbalanced quote'),  # only matching pairs are stripped
    ],
)
def test_clean_instruction(raw, clean):
    assert clean_instruction(raw) == clean


# ---------------------------------------------------------------------------------------------
# the degenerate filter: one case per reason, and keepers


@pytest.mark.parametrize(
    "instruction, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Bread.", "too_short"),
        ("Sourdough", "too_short"),  # one word
        ("Tell me about bread " * 40, "too_long"),
        ("x" * 700, "too_long"),
        ("Compute 1234 + 5678 * 90 / 12 = ???", "mostly_non_alpha"),
        ("What is bread? What is bread? What is bread? What is bread?", "repetition"),
        ("Explain bread!!!!!!!!!!!!", "repetition"),
        ("Write an instruction for the following text.", "meta_instruction"),
        ("Generate a question that this passage answers.", "meta_instruction"),
        ("What is the instruction that this text answers?", "meta_instruction"),
        ("Here is the request: how do I bake bread?", "meta_instruction"),
        ("Response: Sourdough needs a lively starter and patience", "meta_instruction"),
        ("Summarize the above text about sourdough baking.", "meta_instruction"),
        ("Here's the request with the user's request:\n\nWhat's the user's request?", "meta_instruction"),
        ("The user requested a recipe for bread. The response gives one.", "meta_instruction"),
        ("To bake sourdough, you can use a Dutch oven and a hot stone.", "assistant_voice"),
        ("Baking needs patience. Here's how to start a sourdough starter.", "assistant_voice"),
        ("I'm ready to help with your request. What can I assist you with?", "assistant_voice"),
        ("Please share the text you would like me to turn into a request.", "assistant_voice"),
        ("Sure! Tell me more about sourdough baking.", "assistant_voice"),
        ("I'm an AI chatbot that helps with writing, reviewing and editing text.", "assistant_voice"),
        ("You're an AI assistant for text rewriting. Rewrite the input with plain formatting.", "assistant_voice"),
        ("Sourdough needs a lively starter. Feed it twice a day for a week", "echo"),  # prefix of the text
        ("Sourdough needs a lively starter, feed it twice a day for a week, then mix 500 g flour", "echo"),
    ],
)
def test_degenerate_reason(instruction, reason):
    assert DegenerateFilter(FilterConfig()).reason(instruction, SEGMENT) == reason


@pytest.mark.parametrize(
    "instruction",
    [
        "How do I bake sourdough bread at home?",
        "Explain photosynthesis.",
        "Give me a step-by-step sourdough recipe with quantities and oven temperature.",
        "What temperature should I bake sourdough at, and how much water do I need for 500 g of flour?",
        "Write a short poem about bread.",  # "write" alone is not a meta-instruction
        "Provide a list of tasks to do before moving house.",
        "Give me five interview questions for a baker.",
    ],
)
def test_good_instructions_pass(instruction):
    assert DegenerateFilter(FilterConfig()).reason(instruction, SEGMENT) is None


def test_filter_knobs_change_the_verdict():
    short = "Bake bread."
    assert DegenerateFilter(FilterConfig()).reason(short, SEGMENT) is None
    assert DegenerateFilter(FilterConfig(min_chars=20)).reason(short, SEGMENT) == "too_short"
    meta = "Write an instruction for this text."
    assert DegenerateFilter(FilterConfig(meta_patterns=[])).reason(meta, SEGMENT) is None


def test_bad_pattern_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"augment.filter.meta_patterns\[0\]: not a valid regular expression"):
        DegenerateFilter(FilterConfig(meta_patterns=["(unclosed"]))
    # humpback check-params finds it before any model is loaded
    params = tmp_path / "params.yaml"
    params.write_text("augment:\n  filter:\n    assistant_voice_patterns: ['ok', '[a-']\n")
    with pytest.raises(ConfigError, match=r"augment.filter.assistant_voice_patterns\[1\]: not a valid regular"):
        validate_all(params)


def test_echo_overlap():
    assert echo_overlap("feed it twice a day for a week", SEGMENT) == 1.0
    assert echo_overlap("How do I keep a starter alive?", SEGMENT) == 0.0
    assert echo_overlap("Bake bread", "Bake bread") == 1.0


# ---------------------------------------------------------------------------------------------
# the runner, through a fake backward model


class FakeBackward(Engine):
    """Deterministic 'backward model': the instruction depends on the segment text and the seed.

    Segments whose text starts with a marker produce a known degenerate output. `fail_after`
    raises on the n-th call, to simulate a crash mid-run.
    """

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after
        self.seeds: list[int] = []

    def generate(self, requests, sampling, *, desc="generate"):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated crash")
        self.seeds.append(sampling.seed)
        out = []
        for msgs in requests:
            text = msgs[-1]["content"].split("Response:\n", 1)[1]
            if text.startswith("META"):
                out.append("Write an instruction for the text above.")
            elif text.startswith("ECHO"):
                out.append(text[:60])
            elif text.startswith("EMPTY"):
                out.append("<|im_end|>")
            else:
                topic = text.split()[1]
                out.append(f'Instruction: "Tell me about {topic}, variant {sampling.seed}."')
        return out

    def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
        raise NotImplementedError


def _segments(tmp_path: Path, n: int = 20) -> Path:
    rows = []
    for i in range(n):
        kind = ["META", "ECHO", "EMPTY"][i % 3] if i % 4 == 3 else "TOPIC"
        rows.append({"segment_id": f"s{i:03d}", "text": f"{kind} subject{i} is discussed here at some length, with details.",
                     "header": f"Header {i}", "doc_id": f"d{i // 2}"})
    path = tmp_path / "segments.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def _run(tmp_path, seg, engine, cfg, out="out"):
    d = tmp_path / out
    model = tmp_path / "backward"  # a fake engine's model: only its identity is read
    model.mkdir(exist_ok=True)
    m = run_augment(seg, engine, cfg, PromptsConfig(), candidates_path=d / "candidates.parquet",
                    rejected_path=d / "rejected.parquet", metrics_path=d / "augment.json",
                    engine_cfg=EngineConfig(), model_dir=model)
    return m, pl.read_parquet(d / "candidates.parquet"), pl.read_parquet(d / "rejected.parquet")


def test_run_augment_writes_candidates_rejected_and_metrics(tmp_path):
    seg = _segments(tmp_path)
    cfg = AugmentConfig(chunk_size=6, seed=10)
    m, kept, rej = _run(tmp_path, seg, FakeBackward(), cfg)
    assert kept.columns == ["segment_id", "instruction", "output", "header", "doc_id"]
    assert kept.height == 15 and rej.height == 5
    assert kept["instruction"][0] == "Tell me about subject0, variant 10."  # cleaned, chunk 0 seed
    assert kept.filter(pl.col("segment_id") == "s018")["instruction"][0].endswith("variant 13.")  # chunk 3
    assert set(rej["reason"]) == {"meta_instruction", "echo", "empty"}
    assert "raw_instruction" in rej.columns and "reason" in rej.columns
    on_disk = json.loads((tmp_path / "out" / "augment.json").read_text())
    assert on_disk == m
    assert m["segments_in"] == 20 and m["kept"] == 15 and m["rejected"] == 5
    assert m["rejected_by_reason"]["meta_instruction"] == 2 and m["rejected_by_reason"]["too_long"] == 0
    assert m["mean_instruction_chars"] > 0
    assert not list((tmp_path / "out").glob(".generated*"))  # the transient table and parts are gone


def test_all_rejected_is_a_clear_error_after_writing_the_rejects(tmp_path):
    seg = tmp_path / "segments.parquet"
    pl.DataFrame({"segment_id": ["a", "b"], "text": ["META one two three", "META four five six"]}).write_parquet(seg)
    with pytest.raises(EmptyResultError, match=r"every one of the 2 generated instructions was rejected \(meta_instruction 2\)"):
        _run(tmp_path, seg, FakeBackward(), AugmentConfig())
    assert pl.read_parquet(tmp_path / "out" / "rejected.parquet").height == 2
    assert json.loads((tmp_path / "out" / "augment.json").read_text())["kept"] == 0


def test_max_segments_is_a_seeded_sample_in_file_order(tmp_path):
    seg = _segments(tmp_path, 50)
    a = load_segments(seg, AugmentConfig(max_segments=10, seed=1))
    b = load_segments(seg, AugmentConfig(max_segments=10, seed=1))
    c = load_segments(seg, AugmentConfig(max_segments=10, seed=2))
    assert a.height == 10 and a.equals(b) and not a.equals(c)
    assert a["segment_id"].to_list() == sorted(a["segment_id"].to_list())
    assert load_segments(seg, AugmentConfig(max_segments=0)).height == 50


def test_segments_without_header_and_doc_id_are_accepted(tmp_path):
    p = tmp_path / "s.parquet"
    pl.DataFrame({"segment_id": [1, 2], "text": ["a b", "c d"]}).write_parquet(p)
    df = load_segments(p, AugmentConfig())
    assert df["segment_id"].to_list() == ["1", "2"] and df["header"].null_count() == 2


def test_bad_segments_name_the_file(tmp_path):
    p = tmp_path / "s.parquet"
    pl.DataFrame({"segment_id": ["a"], "body": ["x"]}).write_parquet(p)
    with pytest.raises(InputError, match=r"s.parquet: missing column\(s\) text"):
        load_segments(p, AugmentConfig())
    pl.DataFrame({"segment_id": ["a", "a"], "text": ["x", "y"]}).write_parquet(p)
    with pytest.raises(InputError, match="record a: duplicate segment_id"):
        load_segments(p, AugmentConfig())


def test_resume_after_crash_gives_identical_output(tmp_path):
    seg = _segments(tmp_path, 30)
    cfg = AugmentConfig(chunk_size=4, seed=3, sampling=SamplingParams(max_new_tokens=32))
    _, ref_kept, ref_rej = _run(tmp_path, seg, FakeBackward(), cfg, out="ref")

    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(tmp_path, seg, FakeBackward(fail_after=3), cfg, out="resumed")
    parts = list((tmp_path / "resumed").glob(".generated.parquet.parts/part-*.parquet"))
    assert len(parts) == 3
    engine = FakeBackward()
    _, kept, rej = _run(tmp_path, seg, engine, cfg, out="resumed")
    assert engine.seeds == [6, 7, 8, 9, 10]  # only the 5 missing chunks ran, with their own seeds
    assert kept.equals(ref_kept) and rej.equals(ref_rej)


def test_stage_script_end_to_end(tmp_path, monkeypatch):
    seg = _segments(tmp_path)
    (tmp_path / "models" / "backward").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text("augment:\n  max_segments: 8\n  chunk_size: 3\n  seed: 5\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loader, "load_engine", lambda model, cfg: FakeBackward())
    dvc_stage.run("augment", None, "--segments", str(seg))
    kept = pl.read_parquet(tmp_path / "data/augmented/candidates.parquet")
    rej = pl.read_parquet(tmp_path / "data/augmented/rejected.parquet")
    assert kept.height + rej.height == 8
    assert json.loads((tmp_path / "metrics/augment.json").read_text())["segments_in"] == 8


def test_stage_script_missing_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    seg = _segments(tmp_path)
    (tmp_path / "params.yaml").write_text("augment: {}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        dvc_stage.run("augment", None, "--segments", str(seg))
    assert e.value.code == 2
    assert "models/backward: backward model not found" in capsys.readouterr().err


def test_stage_script_rejects_instructions_that_copy_an_eval_prompt(tmp_path, monkeypatch):
    seg = _segments(tmp_path, 20)
    (tmp_path / "models" / "backward").mkdir(parents=True)
    (tmp_path / "data/eval").mkdir(parents=True)
    # the fake model asks "Tell me about subject<i>, variant <seed>.": prompts for the even subjects share 4 words
    (tmp_path / "data/eval/prompts.jsonl").write_text("".join(
        json.dumps({"id": f"p-{i}", "instruction": f"Please tell me about subject{i} in detail."}) + "\n"
        for i in range(0, 20, 2)))
    (tmp_path / "params.yaml").write_text("augment:\n  max_segments: 0\n  chunk_size: 8\n  filter: {eval_ngram: 4}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loader, "load_engine", lambda model, cfg: FakeBackward())
    dvc_stage.run("augment", None, "--segments", str(seg))
    rej = pl.read_parquet(tmp_path / "data/augmented/rejected.parquet").filter(reason="eval_prompt")
    subjects = [int(s[1:]) for s in rej["segment_id"]]
    assert subjects and all(i % 2 == 0 for i in subjects)
    assert rej["detail"].to_list() == [f"p-{i} instruction 4-gram: tell me about subject{i}" for i in subjects]
    kept = pl.read_parquet(tmp_path / "data/augmented/candidates.parquet")
    assert not kept["instruction"].str.contains(r"subject\d*[02468],").any()
    metrics = json.loads((tmp_path / "metrics/augment.json").read_text())
    assert metrics["rejected_by_reason"]["eval_prompt"] == len(subjects)

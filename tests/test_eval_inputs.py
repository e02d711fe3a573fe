import json

import polars as pl
import pytest

from humpback.errors import InputError
from humpback.evaluation.inputs import load_outputs, load_prompts, subset


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bundled_prompts_are_valid_and_cover_categories():
    df = load_prompts("data/eval/prompts.jsonl")
    assert df.height >= 100 and df["prompt_id"].n_unique() == df.height
    cats = set(df["category"])
    assert {"writing", "coding", "maths", "reasoning", "advice", "knowledge", "roleplay", "safety"} <= cats
    assert df["instruction"].n_unique() == df.height


def test_alpaca_eval_json(tmp_path):
    p = tmp_path / "alpaca_eval.json"
    p.write_text(json.dumps([
        {"instruction": "What is 2+2?", "output": "4", "generator": "text_davinci_003", "dataset": "selfinstruct"},
        {"instruction": "Name a colour.", "output": "Blue", "generator": "text_davinci_003", "dataset": "koala"},
    ]))
    prompts = load_prompts(p)
    assert prompts.to_dicts() == [
        {"prompt_id": "p0000", "category": "selfinstruct", "instruction": "What is 2+2?"},
        {"prompt_id": "p0001", "category": "koala", "instruction": "Name a colour."},
    ]
    outs = load_outputs(p)
    assert outs["generator"].to_list() == ["text_davinci_003"] * 2 and outs["output"].to_list() == ["4", "Blue"]


def test_jsonl_with_configured_instruction_column(tmp_path):
    p = write_jsonl(tmp_path / "q.jsonl", [{"question": "Why?", "topic": "x"}, {"question": "How?", "topic": "y"}])
    df = load_prompts(p, instruction_column="question", category_column="topic")
    assert df["instruction"].to_list() == ["Why?", "How?"] and df["category"].to_list() == ["x", "y"]
    with pytest.raises(InputError, match=r"q.jsonl, record line 1: missing key\(s\) instruction; has: question, topic"):
        load_prompts(p)


def test_parquet_outputs_without_generator(tmp_path):
    p = tmp_path / "ref.parquet"
    pl.DataFrame({"instruction": ["a"], "output": [""]}).write_parquet(p)
    assert load_outputs(p).to_dicts() == [{"instruction": "a", "output": "", "generator": "ref"}]


@pytest.mark.parametrize(("content", "message"), [
    ('{"instruction": "a"}', "expected a JSON list"),
    ("[]", "no records"),
    ('[{"instruction": "a"}, 3]', "record 1: expected a JSON object, got int"),
    ('[{"instruction": "a",', "malformed JSON"),
    ('[{"instruction": ""}]', "record 0: empty 'instruction'"),
    ('[{"instruction": 5}]', "record 0: 'instruction' must be a string"),
    ('[{"prompt": "a"}]', r"record 0: missing key\(s\) instruction; has: prompt"),
])
def test_bad_alpaca_json(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(InputError, match=message) as e:
        load_prompts(p)
    assert str(p) in str(e.value)


def test_bad_prompt_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_prompts(tmp_path / "nope.jsonl")
    p = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "instruction": "x"}, {"id": "a", "instruction": "y"}])
    with pytest.raises(InputError, match="record line 2: duplicate id 'a' \\(first at record line 1\\)"):
        load_prompts(p)
    (tmp_path / "broken.jsonl").write_text('{"instruction": "x"}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        load_prompts(tmp_path / "broken.jsonl")
    (tmp_path / "p.csv").write_text("instruction\nx\n")
    with pytest.raises(InputError, match="unsupported file type"):
        load_prompts(tmp_path / "p.csv")


def test_outputs_need_output_column_and_unique_instructions(tmp_path):
    p = write_jsonl(tmp_path / "o.jsonl", [{"instruction": "a"}])
    with pytest.raises(InputError, match=r"o.jsonl, record line 1: missing key\(s\) output"):
        load_outputs(p)
    p = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "a", "output": "1"}, {"instruction": "a", "output": "2"}])
    with pytest.raises(InputError, match="record line 2: duplicate instruction 'a'"):
        load_outputs(p)


def test_subset_is_deterministic_and_balanced():
    df = pl.DataFrame({"prompt_id": [f"{c}{i}" for c in "abc" for i in range(5)],
                       "category": [c for c in "abc" for _ in range(5)],
                       "instruction": [f"{c}{i}" for c in "abc" for i in range(5)]})
    got = subset(df, 7)
    assert got["prompt_id"].to_list() == ["a0", "a1", "a2", "b0", "b1", "c0", "c1"]  # file order kept
    assert subset(df, 7).equals(got)
    assert subset(df, 0).equals(df) and subset(df, 100).equals(df)

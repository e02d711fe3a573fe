"""The select stage's reader of the score table, Parquet or JSONL: every score a number in [1, 5] or
null, the text columns strings; anything else one error naming the file, the record and the fault."""

from __future__ import annotations

import json

import polars as pl
import pytest

from humpback.curation.selection import read_scores
from humpback.errors import InputError


def row(i: int, score) -> dict:
    return {"segment_id": f"s{i}", "instruction": f"instruction {i}", "output": f"output {i}", "score": score}


def jsonl(tmp_path, rows, name="scores.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def parquet(tmp_path, **columns):
    path = tmp_path / "scores.parquet"
    pl.DataFrame(columns).write_parquet(path)
    return path


def error(path) -> str:
    with pytest.raises(InputError) as e:
        read_scores(path)
    return str(e.value)


def test_jsonl_scores_are_floats_or_null(tmp_path):
    df = read_scores(jsonl(tmp_path, [row(0, 4), row(1, 4.5), row(2, None), row(3, 1), row(4, 5.0)]))
    assert df["score"].dtype == pl.Float64 and df["score"].to_list() == [4.0, 4.5, None, 1.0, 5.0]
    assert df["segment_id"].to_list() == [f"s{i}" for i in range(5)]
    assert df["instruction"][1] == "instruction 1" and df["output"][4] == "output 4"
    # a file where no row has a score still has a numeric score column
    none = read_scores(jsonl(tmp_path, [row(0, None), row(1, None)], "none.jsonl"))
    assert none["score"].dtype == pl.Float64 and none["score"].null_count() == 2


@pytest.mark.parametrize("score,message", [
    ("4", "'score' must be a number in [1, 5] or null (unparsed), got str: '4'"),
    (True, "'score' must be a number in [1, 5] or null (unparsed), got bool: True"),
    ([4], "'score' must be a number in [1, 5] or null (unparsed), got list: [4]"),
    (7, "'score' 7 is out of the rubric's range [1, 5]"),
    (0.5, "'score' 0.5 is out of the rubric's range [1, 5]"),
])
def test_a_bad_jsonl_score_names_the_line(tmp_path, score, message):
    path = jsonl(tmp_path, [row(0, 3), row(1, score)])
    assert error(path) == f"{path}, record line 2: {message}"


@pytest.mark.parametrize("literal,shown", [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")])
def test_a_non_finite_jsonl_score_names_the_line(tmp_path, literal, shown):
    path = jsonl(tmp_path, [json.dumps(row(0, 3)), json.dumps(row(1, 0)).replace(": 0}", f": {literal}}}")])
    assert error(path) == f"{path}, record line 2: 'score' must be a number in [1, 5] or null (unparsed), got {shown}"


def test_jsonl_text_faults_name_the_row(tmp_path):
    path = jsonl(tmp_path, [row(0, 3), row(1, 4) | {"output": None}])
    assert error(path) == f"{path}, record row 1: 'output' is null"
    # a number where text belongs is named, not turned into text
    path = jsonl(tmp_path, [row(0, 3), row(1, 4) | {"instruction": 6}], "mixed.jsonl")
    assert error(path) == f"{path}, record line 2: 'instruction' must be a string, got int: 6"
    path = jsonl(tmp_path, [row(0, 3) | {"output": ["a"]}], "list.jsonl")
    assert error(path) == f"{path}, record line 1: 'output' must be a string, got list: ['a']"


def test_parquet_scores(tmp_path):
    ids, ins, out = [f"s{i}" for i in range(4)], ["a", "b", "c", "d"], ["w", "x", "y", "z"]
    df = read_scores(parquet(tmp_path, segment_id=ids, instruction=ins, output=out, score=[1, 5, None, 3]))
    assert df["score"].dtype == pl.Float64 and df["score"].to_list() == [1.0, 5.0, None, 3.0]
    nulls = read_scores(parquet(tmp_path, segment_id=ids, instruction=ins, output=out, score=[None] * 4))
    assert nulls["score"].dtype == pl.Float64 and nulls["score"].null_count() == 4


@pytest.mark.parametrize("score,record,message", [
    ([None, "4", "x", None], 1, "column 'score' must hold numbers in [1, 5] or null (unparsed), it holds String: '4'"),
    (["5", None, None, None], 0, "column 'score' must hold numbers in [1, 5] or null (unparsed), it holds String: '5'"),
    ([3.0, 2.0, 0.5, 9.0], 2, "'score' 0.5 is out of the rubric's range [1, 5]"),
    ([3.0, 5.5, None, 1.0], 1, "'score' 5.5 is out of the rubric's range [1, 5]"),
    ([3.0, None, float("nan"), 1.0], 2, "'score' must be a number in [1, 5] or null (unparsed), got nan"),
    ([float("-inf"), 2.0, 3.0, 1.0], 0, "'score' must be a number in [1, 5] or null (unparsed), got -inf"),
])
def test_a_bad_parquet_score_names_the_row(tmp_path, score, record, message):
    path = parquet(tmp_path, segment_id=["a", "b", "c", "d"], instruction=["i"] * 4, output=["o"] * 4, score=score)
    assert error(path) == f"{path}, record row {record}: {message}"


def test_parquet_text_faults(tmp_path):
    path = parquet(tmp_path, segment_id=["a", "b"], instruction=["i", None], output=["o", "p"], score=[3.0, 4.0])
    assert error(path) == f"{path}, record row 1: 'instruction' is null"
    path = parquet(tmp_path, segment_id=["a", "b"], instruction=["i", "j"], output=[1, 2], score=[3.0, 4.0])
    assert error(path) == f"{path}: column 'output' must hold strings, it holds Int64"


def test_jsonl_columns_and_extra_keys(tmp_path):
    df = read_scores(jsonl(tmp_path, [row(0, 4), row(1, None)]))
    assert df.columns == ["segment_id", "instruction", "output", "score"]
    # an extra key that is null in the first hundred rows and text later is read, not guessed from the start
    rows = [row(i, 3) | {"note": None} for i in range(120)] + [row(120, 4) | {"note": "late"}]
    assert read_scores(jsonl(tmp_path, rows, "late.jsonl"))["note"].to_list()[-1] == "late"
    # an extra key whose values no one column can hold
    path = jsonl(tmp_path, [row(0, 3) | {"meta": [1]}, row(1, 4) | {"meta": "x"}], "meta.jsonl")
    assert error(path).startswith(f"{path}: columns of mixed types (ComputeError: could not append value")


def test_missing_columns_are_named(tmp_path):
    path = jsonl(tmp_path, [{"segment_id": "s0", "instruction": "i", "score": 3}])
    assert error(path) == f"{path}, record line 1: missing key(s) output; has: segment_id, instruction, score"
    path = parquet(tmp_path, segment_id=["a"], instruction=["i"], score=[3.0])
    assert error(path) == f"{path}: missing column(s) output; has: segment_id, instruction, score"


def test_a_text_score_column_of_nulls_names_row_0(tmp_path):
    path = tmp_path / "scores.parquet"
    pl.DataFrame({"segment_id": ["a", "b"], "instruction": ["i", "j"], "output": ["o", "p"],
                  "score": pl.Series([None, None], dtype=pl.String)}).write_parquet(path)
    assert error(path) == (f"{path}, record row 0: column 'score' must hold numbers in [1, 5] or null (unparsed), "
                           "it holds String: None")

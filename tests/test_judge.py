import math

import polars as pl
import pytest
from test_eval_fakes import FirstSlotJudge, LongerJudge, RecordingEngine, TextJudge

from humpback.errors import ConfigError
from humpback.evaluation.config import JudgeConfig
from humpback.evaluation.judge import PairwiseJudge, pair_outputs, parse_verdict, summarise


def pairs(outputs, refs):
    n = len(outputs)
    return pl.DataFrame({
        "prompt_id": [f"q{i}" for i in range(n)], "category": ["c"] * n,
        "instruction": [f"instruction {i}" for i in range(n)], "output": outputs, "reference_output": refs,
    })


@pytest.mark.parametrize(("text", "expected"), [
    ("1", 0), ("2", 1), (" 2\n", 1), ("Better answer: 2", 1), ("**1**", 0), ("(2)", 1), ("2. It is clearer", 1),
    ("Answer 1 is better than Answer 2.", 0), ("The better answer is Answer 2.", 1), ("I prefer answer 2.", 1),
    ("Answer 2 is worse than answer 1", None), ("Both are equally good.", None), ("", None), ("1.5", None),
    ("3", None),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text, prefix="Better answer: ") == expected


def test_parse_verdict_other_labels():
    assert parse_verdict("B", labels=("A", "B")) == 1
    assert parse_verdict("Answer A is better", labels=("A", "B")) == 0


def test_position_bias_cancels_to_fifty_percent():
    engine = FirstSlotJudge()
    out = PairwiseJudge(engine, JudgeConfig()).judge(pairs(["x", "y", "z"], ["a", "b", "c"]))
    p_first = 1 / (1 + math.exp(-3.0 + 0.05))
    assert out["p_model_first"].to_list() == pytest.approx([p_first] * 3)
    assert out["p_model_second"].to_list() == pytest.approx([1 - p_first] * 3)
    assert out["preference"].to_list() == pytest.approx([1.5] * 3)
    m = summarise(out, judge="fake", reference="ref")
    assert m["win_rate"] == pytest.approx(50)
    assert m["ci_low"] == pytest.approx(50) and m["ci_high"] == pytest.approx(50)  # every prompt a tie: no spread
    # both orders were asked, with the default prefix and labels
    assert len(engine.logprob_calls) == 2
    assert engine.logprob_calls[0][1:] == (["1", "2"], "Better answer: ")


def test_model_first_then_second_order():
    engine = FirstSlotJudge()
    PairwiseJudge(engine, JudgeConfig()).judge(pairs(["MODEL"], ["REF"]))
    first, second = engine.logprob_calls[0][0][0], engine.logprob_calls[1][0][0]
    text = first[-1]["content"]
    assert text.index("MODEL") < text.index("REF")
    text = second[-1]["content"]
    assert text.index("REF") < text.index("MODEL")


def test_identical_outputs_are_ties_without_a_call():
    engine = LongerJudge(scale=1.0)
    out = PairwiseJudge(engine, JudgeConfig()).judge(pairs(["same", " same\n", "longer answer"], ["same", "same", "x"]))
    assert out["preference"].to_list()[:2] == [1.5, 1.5]
    assert out["method_model_first"].to_list() == ["identical", "identical", "logprob"]
    assert len(engine.logprob_calls[0][0]) == 1  # only the differing pair went to the judge
    assert out["preference"][2] > 1.9


def test_all_identical_needs_no_engine():
    out = PairwiseJudge(None, JudgeConfig()).judge(pairs(["a", "b"], ["a", "b"]))
    assert summarise(out, judge="none", reference="base")["win_rate"] == 50


def test_text_fallback_and_unparsed_count_as_ties():
    engine = TextJudge(marker="GOOD")
    cfg = JudgeConfig()  # auto: logprobs raise NotImplementedError -> parse generated text
    out = PairwiseJudge(engine, cfg).judge(pairs(["GOOD one", "meh", "also meh"], ["bad", "GOOD ref", "plain"]))
    assert out["preference"].to_list() == [2.0, 1.0, 1.5]
    assert out["method_model_first"].to_list() == ["text", "text", "unparsed"]
    m = summarise(out, judge="text", reference="ref")
    # preferences 2, 1, 1.5: the interval spans what resampling three prompts can give, around the mean
    assert m["win_rate"] == pytest.approx(50) and 0 <= m["ci_low"] < 50 < m["ci_high"] <= 100
    assert m["unparsed_verdicts"] == 2 and m["verdict_methods"] == {"text": 4, "unparsed": 2}
    # greedy decoding for verdicts
    assert engine.generate_calls[0][1].temperature == 0
    assert out["verdict_model_first"][2] == "I cannot decide."


def test_logprob_mode_does_not_fall_back():
    with pytest.raises(NotImplementedError):
        PairwiseJudge(TextJudge(), JudgeConfig(mode="logprob")).judge(pairs(["a"], ["b"]))


class BlindJudge(RecordingEngine):
    """Gives -inf for both labels (the labels are not single tokens for it)."""

    def logprobs(self, messages, choices):
        return {c: -math.inf for c in choices}

    def reply(self, messages, sampling):
        return "2"


def test_auto_falls_back_per_request_when_labels_invisible():
    engine = BlindJudge()
    out = PairwiseJudge(engine, JudgeConfig()).judge(pairs(["a"], ["b"]))
    assert out["method_model_first"][0] == "text" and out["preference"][0] == 1.5  # "2" in both orders
    strict = PairwiseJudge(BlindJudge(), JudgeConfig(mode="logprob")).judge(pairs(["a"], ["b"]))
    assert strict["method_model_first"][0] == "unparsed"


def test_generate_mode_skips_logprobs():
    engine = LongerJudge()
    engine.reply = lambda messages, sampling: "1"
    PairwiseJudge(engine, JudgeConfig(mode="generate")).judge(pairs(["a"], ["b"]))
    assert engine.logprob_calls == [] and len(engine.generate_calls) == 2


def test_labels_must_be_two_distinct():
    with pytest.raises(ConfigError):
        PairwiseJudge(None, JudgeConfig(labels=["1", "1"]))


def test_pair_outputs_matches_by_instruction():
    model = pl.DataFrame({"prompt_id": ["a", "b"], "category": ["x", "y"], "instruction": ["i1", "i2"],
                          "output": ["o1", "o2"], "generator": ["m", "m"]})
    ref = pl.DataFrame({"instruction": ["i2", "other"], "output": ["r2", "r"], "generator": ["g", "g"]})
    got, missing = pair_outputs(model, ref)
    assert missing == 1 and got["prompt_id"].to_list() == ["b"] and got["reference_output"].to_list() == ["r2"]

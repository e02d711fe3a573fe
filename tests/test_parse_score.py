"""parse_score: the last explicit rating in [1, 5] (decimals too) in what real judge models write, else None."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from humpback.curation.parse import parse_score

JUDGE_OUTPUTS = [
    # (judge text, expected)
    ("The answer is complete and written like an assistant.\nScore: 4", 4),
    ("Reasoning: clear, expert, no filler.\n\n**Score:** 5", 5),
    ("It addresses the question but reads like a forum post.\nScore: 3/5", 3),
    ("The response is off-topic.\nscore: 1.", 1),
    ("Rating: 4 out of 5", 4),
    ("The answer is helpful and self-contained, but it is a blog excerpt. I would give this a 3.", 3),
    ("At first glance I thought Score: 2, but the answer does cover every step.\nScore: 4", 4),
    ("The response is excellent.\nScore: 7", None),  # out of range: never fall back to another number
    ("Mostly good.\nScore: 4.5", 4.5),  # the paper's A_5 keeps >= 4.5: a half point is a rating
    ("Clear and complete, a little long. 4.5/5", 4.5),
    ("Score: 3.75", 3.75),
    ("Rating: 4.5 out of 5", 4.5),
    ("I would rate this response as 4.5.", 4.5),
    ("**Score:** 4.5.", 4.5),
    ("Score: 5.5", None),  # a decimal out of range
    ("Score: 0.5", None),
    ("Score: 4.5/10", None),  # another scale, with a decimal
    ("Score: 4.25 to 4.5", None),  # a range whose ends are decimals is still a range
    ("Score: 4-4.5", None),
    ("Score: 4 or 5", None),
    ("The answer is fine, nothing to add.", None),
    ("## Evaluation\nThe answer gives only an outline.\n## Score: 2\n", 2),
    ("Good answer.   \nScore: 5   \n\n", 5),
    ("the answer is vague.\nscore: 1", 1),
    ("Well organised and complete.\nScore - 5", 5),
    ("It is a navigation menu, not an answer (Score: 1)", 1),
    ("Reasoning: The text is an advertisement.\n\n### Score\n1", 1),
    ("**Score**: 4", 4),
    ("Score: **5**", 5),
    ("Score: [3]", 3),
    ("Final score: 4 (clear, but could be more concise)", 4),
    ("I'd rate it 4/5.", 4),
    ("I give it a score of 2 because it only lists the steps.", 2),
    ("I would rate this response as 5.", 5),
    ("Score: Four", 4),
    ("Score: 8/10", None),  # another scale
    ("Score: 3-4", None),  # a range is not a rating
    ("Score: <rating>", None),  # the template echoed, no rating given
    ("Score: 4.0", 4.0),
    ("A score of 1 means the answer is incomplete; 5 means perfect. This answer is perfect.\nScore: 5", 5),
    ("Score 1: The answer is incomplete or vague.\nScore 2: The answer gives only a method.", None),  # rubric echo
    ("Overall: 4/5", 4),
    ("Score: 4. The answer only covers 2/3 of the sub-questions, but it does so well.", 4),
    ("The score is 3.", 3),
    ("Score:5", 5),
    ("SCORE: 2", 2),
    ("Score: 0", None),
    ("Score: -1", None),
    ("The answer has 12 steps and 3 examples.", None),  # numbers that are not ratings
    ("", None),
    ("Score: 5\n\nExplanation: The answer is written as an AI assistant and is well organised.", 5),
]


@pytest.mark.parametrize("text, expected", JUDGE_OUTPUTS)
def test_parse_real_looking_judge_outputs(text, expected):
    got = parse_score(text)
    assert got == expected
    assert got is None or type(got) is float  # one type for integer and fractional ratings alike


def test_none_input():
    assert parse_score(None) is None


def test_last_explicit_out_of_range_does_not_fall_back():
    assert parse_score("Score: 4\nOn reflection, Score: 9") is None
    assert parse_score("Score: 9\nOn reflection, Score: 4") == 4
    assert parse_score("Score: 4.5\nOn reflection, Score: 5.5") is None
    assert parse_score("Score: 3\nOn reflection, Score: 4.5") == 4.5


@given(st.integers(min_value=100, max_value=500), st.sampled_from(["Score: {x}", "{x}/5", "Rating: {x} out of 5"]))
def test_any_decimal_in_range_is_read_exactly(hundredths, form):
    x = f"{hundredths / 100:.2f}"
    assert parse_score(f"Reasoning: fine.\n{form.format(x=x)}") == float(x)


@given(st.text(max_size=300), st.integers(min_value=1, max_value=5), st.sampled_from(["", " ", "\n", "  \n"]))
def test_any_text_ending_with_a_score_line_parses_to_it(prefix, k, trailing):
    assert parse_score(f"{prefix}\nScore: {k}{trailing}") == k


@given(st.text(alphabet=st.characters(blacklist_categories=("Nd", "No", "Nl")), max_size=300))
def test_text_without_digits_has_no_score(text):
    assert parse_score(text) is None

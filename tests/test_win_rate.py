import math

import numpy as np
import pytest

from humpback.evaluation.metrics import lc_win_rate, length_feature, win_rate


def test_hand_computed_mixed_soft():
    p = [2.0, 1.0, 1.5, 1.75]  # soft: 1, 0, .5, .75 -> mean .5625
    m = win_rate(p)
    assert m["win_rate"] == pytest.approx(56.25)
    # sem = std(ddof=1) / sqrt(n): values 1, 0, .5, .75
    soft = np.array([1, 0, 0.5, 0.75])
    assert m["standard_error"] == pytest.approx(100 * soft.std(ddof=1) / 2)
    assert (m["n_wins"], m["n_draws"], m["n_losses"], m["n_total"]) == (2, 1, 1, 4)
    assert m["discrete_win_rate"] == pytest.approx(100 * (2 + 0.5) / 4)
    assert m["lc_win_rate"] is None and m["avg_length"] is None


def test_all_ties_identical_outputs():
    m = win_rate([1.5] * 5, lengths=[10] * 5, ref_lengths=[10] * 5)
    assert m["win_rate"] == 50 and m["discrete_win_rate"] == 50
    assert m["standard_error"] == 0
    assert (m["n_wins"], m["n_draws"], m["n_losses"]) == (0, 5, 0)
    assert m["lc_win_rate"] == pytest.approx(50)


def test_all_wins_and_all_losses():
    wins = win_rate([2, 2, 2], lengths=[5, 9, 7], ref_lengths=[3, 4, 5])
    assert wins["win_rate"] == 100 and wins["discrete_win_rate"] == 100 and wins["lc_win_rate"] == 100
    assert wins["n_wins"] == 3 and wins["standard_error"] == 0
    losses = win_rate([1, 1], lengths=[1, 2], ref_lengths=[3, 4])
    assert losses["win_rate"] == 0 and losses["lc_win_rate"] == 0 and losses["n_losses"] == 2
    assert losses["avg_length"] == 1.5 and losses["reference_avg_length"] == 3.5


def test_single_prompt_has_no_standard_error():
    assert win_rate([1.8])["standard_error"] is None


@pytest.mark.parametrize("bad", [[], [0.9], [2.1], [float("nan")]])
def test_rejects_bad_preferences(bad):
    with pytest.raises(ValueError):
        win_rate(bad)


def test_rejects_length_mismatch():
    with pytest.raises(ValueError, match="lengths"):
        win_rate([1.5, 2], lengths=[1], ref_lengths=[1, 2])


def test_length_feature_normalised_and_bounded():
    x = length_feature(np.array([100, 200, 300]), np.array([100, 100, 100]))
    assert x[0] == 0 and x[2] == pytest.approx(math.tanh(2.0)) and np.all(np.abs(x) < 1)
    assert np.all(length_feature(np.array([5, 6]), np.array([4, 5])) == 0)  # constant difference


def test_lc_without_length_effect_matches_intercept():
    # Same length everywhere: the feature is 0 and LC is the fitted mean preference.
    p = [2, 2, 2, 1, 1.5, 1.75, 1.25, 2]
    assert lc_win_rate(p, [10] * 8, [10] * 8) == pytest.approx(win_rate(p)["win_rate"], abs=0.5)


def test_lc_removes_pure_length_preference():
    # The model's answers are usually longer; the judge's preference depends on the length gap alone.
    rng = np.random.default_rng(0)
    n = 400
    ref = rng.integers(200, 400, n)
    diff = rng.normal(150, 200, n)  # mostly longer
    model = np.maximum(ref + diff, 1)
    x = length_feature(model, ref)
    p_win = 1 / (1 + np.exp(-3 * x))  # no quality effect: at equal length it is a coin toss
    prefs = 1 + p_win
    m = win_rate(prefs, lengths=model, ref_lengths=ref)
    assert m["win_rate"] > 65
    assert m["lc_win_rate"] == pytest.approx(50, abs=3)


def test_lc_keeps_a_real_quality_gap():
    rng = np.random.default_rng(1)
    n = 400
    ref = rng.integers(200, 400, n)
    model = ref + rng.normal(0, 100, n)
    x = length_feature(model, ref)
    p_win = 1 / (1 + np.exp(-(1.0 + 2 * x)))  # intercept 1 -> 73.1% at equal length
    m = win_rate(1 + p_win, lengths=model, ref_lengths=ref)
    assert m["lc_win_rate"] == pytest.approx(100 / (1 + math.exp(-1)), abs=3)


@pytest.mark.parametrize("kwargs,message", [
    ({"preferences": []}, "preferences: empty"),
    ({"preferences": [2.5]}, "preferences: every value must lie in [1, 2]"),
    ({"preferences": [0.5, 1.5]}, "preferences: every value must lie in [1, 2]"),
    ({"preferences": [1.0, float("nan")]}, "preferences: contains NaN or infinite values"),
    ({"preferences": [[1.5, 1.5]]}, "preferences: expected a flat sequence"),
    ({"preferences": [1.5, 2], "lengths": [1, float("inf")], "ref_lengths": [1, 2]},
     "lengths: contains NaN or infinite values"),
    ({"preferences": [1.5, 2], "lengths": [1, 2], "ref_lengths": [1, float("nan")]},
     "ref_lengths: contains NaN or infinite values"),
    ({"preferences": [1.5, 2], "lengths": [1, 2, 3], "ref_lengths": [1, 2]},
     "lengths: expected 2 values each, got 3 and 2"),
])
def test_each_bad_argument_is_named(kwargs, message):
    preferences = kwargs.pop("preferences")
    with pytest.raises(ValueError) as e:
        win_rate(preferences, **kwargs)
    assert str(e.value) == message


def test_the_ends_of_the_scale_two_prompts_and_one_sided_lengths():
    m = win_rate([1.0, 2.0])
    assert m["win_rate"] == 50 and m["standard_error"] == pytest.approx(50)  # two prompts have a spread
    assert set(m) == {"win_rate", "standard_error", "discrete_win_rate", "n_wins", "n_draws", "n_losses",
                      "n_total", "lc_win_rate", "avg_length", "reference_avg_length"}
    # lengths of one side only are not a length comparison: no averages, no LC, no error
    for kwargs in ({"lengths": [3, 4]}, {"ref_lengths": [3, 4]}):
        one = win_rate([1.25, 2.0], **kwargs)
        assert one["avg_length"] is None and one["reference_avg_length"] is None and one["lc_win_rate"] is None
    # length_controlled=False keeps the averages and skips the fit
    m = win_rate([1.25, 2.0, 1.5], lengths=[3, 9, 4], ref_lengths=[5, 5, 5], length_controlled=False)
    assert m["lc_win_rate"] is None and m["avg_length"] == pytest.approx(16 / 3) and m["reference_avg_length"] == 5


def test_text_where_a_preference_belongs_is_a_value_error():
    # a ValueError like every other bad preference, not the TypeError numpy gives for text
    with pytest.raises(ValueError, match="could not convert string to float: 'high'"):
        win_rate(["high"])


def test_the_one_model_fit_names_its_own_bad_input():
    with pytest.raises(ValueError) as e:
        lc_win_rate([1.5, float("nan")], [1, 2], [1, 2])
    assert str(e.value) == "preferences: contains NaN or infinite values"


def test_length_feature_needs_two_prompts_for_a_spread():
    assert length_feature(np.array([5]), np.array([3])).tolist() == [0.0]
    two = length_feature(np.array([1, 3]), np.array([0, 0]))
    assert two.tolist() == pytest.approx([math.tanh(1 / math.sqrt(2)), math.tanh(3 / math.sqrt(2))])

"""The judge's own check: degradations, the stats a biased, a length-loving and an ideal judge get,
and the stage end to end (fake judge, and the tiny random Llama through the real engine)."""

import json
import math
import shutil

import dvc_stage
import numpy as np
import polars as pl
import pytest
from test_eval_fakes import FirstSlotJudge, LongerJudge, RecordingEngine, slots

from humpback.evaluation import loading
from humpback.evaluation.config import JudgeCheckConfig, JudgeConfig
from humpback.evaluation.judge import PairwiseJudge
from humpback.evaluation.judge_check import (
    KINDS,
    RENAME,
    check_pairs,
    cut_mid_sentence,
    derangement,
    shuffle_sentences,
    summarise_check,
)

ANSWERS = [
    "Paris is the capital of France. It lies on the Seine. About two million people live there.",
    "Boil the water first. Add the pasta and stir it. Drain after nine minutes and serve it warm.",
    "A prime number has exactly two divisors. Seven is prime. Nine is not, since three divides it.",
    "Photosynthesis turns light into chemical energy. Plants store it as sugar.",
    "Use a list comprehension. It is shorter than a loop and often faster too.",
    "The mitochondria produce most of the energy of a cell, which is why they are called its powerhouse.",
    "Sort the numbers, then take the middle one. With an even count, average the two middle values.",
    "Rome was not built in a day. Its history spans nearly three thousand years of change.",
]


def reference(answers=ANSWERS) -> pl.DataFrame:
    return pl.DataFrame({"instruction": [f"question {i}" for i in range(len(answers))], "output": answers,
                         "generator": ["ref"] * len(answers)})


def run_check(engine, answers=ANSWERS, **cfg) -> dict:
    pairs = check_pairs(reference(answers), JudgeCheckConfig(**cfg))
    judgements = PairwiseJudge(engine, JudgeConfig()).judge(pairs).rename(RENAME)
    return summarise_check(judgements, JudgeCheckConfig(**cfg), judge="fake", reference="ref")


class OracleJudge(RecordingEngine):
    """Knows each question's own answer: prefers whichever slot holds it, confidently, in either order."""

    def logprobs(self, messages, choices):
        instruction, a, _ = slots(messages)
        first_good = a == ANSWERS[int(instruction.split()[-1])]
        return {choices[0]: -0.05, choices[1]: -3.0} if first_good else {choices[0]: -3.0, choices[1]: -0.05}


# ---------------------------------------------------------------------------------------------
# degradations


def test_cut_is_shorter_and_ends_mid_sentence():
    for text in ANSWERS:
        cut = cut_mid_sentence(text)
        assert cut is not None and len(cut) < len(text) and text.startswith(cut)
        assert cut[-1] not in ".!?"
        assert len(cut.split()) >= len(text.split()) // 2
    # a half that would end a sentence takes one more word: the cut is inside the next sentence
    assert cut_mid_sentence("One two three. Four five six.") == "One two three. Four"
    assert cut_mid_sentence("too short here") is None


def test_shuffle_differs_and_is_seeded():
    text = ANSWERS[0]
    a = shuffle_sentences(text, np.random.default_rng(3))
    b = shuffle_sentences(text, np.random.default_rng(3))
    assert a == b and a != text and sorted(a.split(". ")) != text.split(". ")
    assert sorted(s.rstrip(".") for s in a.split(". ")) == sorted(s.rstrip(".") for s in text.split(". "))
    # two sentences: the only other order, whatever the seed
    assert all(shuffle_sentences("First one. Second one.", np.random.default_rng(s)) == "Second one. First one."
               for s in range(5))
    assert shuffle_sentences("Only one sentence here", np.random.default_rng(0)) is None
    assert shuffle_sentences("Same. Same.", np.random.default_rng(0)) is None  # every order reads the same


def test_derangement_moves_every_index():
    for n in (2, 3, 10, 41):
        for seed in range(5):
            d = derangement(n, np.random.default_rng(seed))
            assert sorted(d) == list(range(n)) and all(d[i] != i for i in range(n))


def test_pairs_are_deterministic_and_cover_every_kind():
    cfg = JudgeCheckConfig(max_answers=5, seed=7)
    a, b = check_pairs(reference(), cfg), check_pairs(reference(), cfg)
    assert a.equals(b)
    assert a["prompt_id"].n_unique() == 5 and set(a["category"]) == set(KINDS)
    assert (a["output"] != a["reference_output"]).all()
    other = a.filter(pl.col("category") == "other_prompt")
    assert all(d in ANSWERS and d != o for o, d in zip(other["output"], other["reference_output"], strict=True))
    assert not check_pairs(reference(), JudgeCheckConfig(max_answers=5, seed=8)).equals(a)  # the seed picks
    assert check_pairs(reference(), JudgeCheckConfig(max_answers=0))["prompt_id"].n_unique() == len(ANSWERS)


# ---------------------------------------------------------------------------------------------
# judges


def test_first_slot_judge_fails_its_check():
    m = run_check(FirstSlotJudge())
    assert m["order_consistency"] == 0 and m["first_slot_rate"] == 1
    assert m["discrimination"] == pytest.approx(0.5)
    assert m["trustworthy"] is False
    # every answer gives a cut and an other-prompt pair, all but the one-sentence one a shuffle
    assert m["n"] == len(ANSWERS) * 3 - 1 and m["thresholds"] == {"discrimination": 0.6, "order_consistency": 0.6}
    assert all(m["by_degradation"][k]["order_consistency"] == 0 for k in KINDS)


def test_length_judge_passes_cut_but_not_other_prompt():
    m = run_check(LongerJudge(k=3.0, scale=10.0))
    by = m["by_degradation"]
    assert by["cut"]["discrimination"] == 1 and by["cut"]["order_consistency"] == 1
    # another prompt's answer wins exactly where it is the longer one
    pairs = check_pairs(reference(), JudgeCheckConfig())
    other = pairs.filter(pl.col("category") == "other_prompt")
    longer = np.mean([len(o) > len(d) for o, d in zip(other["output"], other["reference_output"], strict=True)])
    assert by["other_prompt"]["discrimination"] == pytest.approx(longer)
    assert by["other_prompt"]["discrimination"] < 0.6
    # the same length, shuffled: the judge cannot tell, every pair a tie
    assert by["shuffle"]["discrimination"] == 0.5 and by["shuffle"]["order_consistency"] == 0


def test_ideal_judge_passes():
    m = run_check(OracleJudge())
    assert m["discrimination"] == 1 and m["order_consistency"] == 1 and m["first_slot_rate"] == 0.5
    assert m["trustworthy"] is True
    assert all(m["by_degradation"][k]["discrimination"] == 1 for k in KINDS)
    assert run_check(OracleJudge(), min_discrimination=1.0, min_order_consistency=1.0)["trustworthy"]


class LeaningOracle(OracleJudge):
    """Knows the better answer, but leans to slot 1 so hard that it keeps it there when the intact
    answer sits in slot 2: P(slot 1) = 0.95 with the intact answer first, 0.6 with it second."""

    def logprobs(self, messages, choices):
        instruction, a, _ = slots(messages)
        p = 0.95 if a == ANSWERS[int(instruction.split()[-1])] else 0.6
        return {choices[0]: math.log(p), choices[1]: math.log(1 - p)}


def test_a_judge_that_discriminates_but_flips_with_the_order_is_not_trustworthy():
    m = run_check(LeaningOracle())
    assert m["discrimination"] == 1 and m["order_consistency"] == 0 and m["first_slot_rate"] == 1
    assert m["mean_p_intact"] == pytest.approx((0.95 + 0.4) / 2)
    assert m["trustworthy"] is False


def test_no_pairs_is_not_trustworthy():
    m = run_check(FirstSlotJudge(), answers=["a b", "c"])  # too short to cut or shuffle; other_prompt only
    assert m["n"] == 2
    empty = run_check(None, answers=["one"])
    assert empty["n"] == 0 and empty["discrimination"] is None and empty["trustworthy"] is False


# ---------------------------------------------------------------------------------------------
# the stage


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/eval/outputs").mkdir(parents=True)
    (tmp_path / "models/base").mkdir(parents=True)
    ref = reference().with_columns(prompt_id=pl.format("p{}", pl.int_range(pl.len())), category=pl.lit("c"))
    ref.write_parquet(tmp_path / "data/eval/outputs/base.parquet")
    (tmp_path / "params.yaml").write_text("judge:\n  chunk_size: 5\n  check: {max_answers: 6, seed: 1}\n")
    return tmp_path


def test_stage_writes_judgements_and_metrics(project, monkeypatch):
    judges = []

    def fake_judge(cfg, judge_dir, engine_cfg):
        judges.append(OracleJudge())
        return judges[-1]

    monkeypatch.setattr(loading, "load_judge_engine", fake_judge)
    dvc_stage.run("judge_check")
    j = pl.read_parquet(project / "data/eval/judge_check.parquet")
    assert set(j["kind"]) == set(KINDS) and j["prompt_id"].n_unique() == 6
    assert {"intact", "degraded", "p_intact_first", "p_intact_second"} <= set(j.columns)
    m = json.loads((project / "metrics/eval/judge_check.json").read_text())
    assert m["trustworthy"] is True and m["n"] == j.height and m["n_answers"] == 6
    assert set(m["by_degradation"]) == set(KINDS) and judges[0].closed


def test_stage_on_the_tiny_model(project, tiny_model_dir):
    shutil.rmtree(project / "models/base")
    shutil.copytree(tiny_model_dir, project / "models/base")
    with open(project / "params.yaml", "a") as f:
        f.write("engine: {backend: transformers, device: cpu, dtype: float32, cpu_threads: 1}\n")
    dvc_stage.run("judge_check")
    m = json.loads((project / "metrics/eval/judge_check.json").read_text())
    j = pl.read_parquet(project / "data/eval/judge_check.parquet")
    assert m["n"] == j.height > 0 and set(j["method_intact_first"]) == {"logprob"}
    assert all(0 <= m[k] <= 1 for k in ("discrimination", "order_consistency", "first_slot_rate"))
    # a random model carries no sense of quality: its soft verdicts sit near chance
    assert not math.isnan(m["mean_p_intact"]) and isinstance(m["trustworthy"], bool)

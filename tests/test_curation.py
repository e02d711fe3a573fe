"""Self-curation: logprob expected-score maths, both scoring modes, selection, and the two stages."""

import json
import logging
import math
from pathlib import Path

import dvc_stage
import polars as pl
import pytest
from stub_server import StubServer

from humpback.config import convert
from humpback.curation.bins import histogram, score_bin
from humpback.curation.config import ScoreConfig, SelectConfig
from humpback.curation.scoring import SCORE_SCHEMA, expected_score, run_score
from humpback.curation.selection import run_select, select
from humpback.engines import loader
from humpback.engines.base import Engine, SamplingParams
from humpback.engines.config import EngineConfig, OpenAIConfig
from humpback.engines.openai_engine import OpenAIEngine
from humpback.errors import ConfigError, EmptyResultError, InputError
from humpback.prompts import CURATION_ASK_REASONING, CURATION_ASK_SCORE, SCORE_PREFIX, PromptsConfig

REPO = Path(__file__).resolve().parents[1]
LN = math.log

# ---------------------------------------------------------------------------------------------
# logprob maths


def test_expected_score_renormalises_over_the_digits():
    # p = (0.1, 0.1, 0.2, 0.2, 0.2) of the whole vocabulary: mass 0.8, renormalised (1,1,2,2,2)/8
    lp = {"1": LN(0.1), "2": LN(0.1), "3": LN(0.2), "4": LN(0.2), "5": LN(0.2)}
    d = expected_score(lp)
    assert d.expected == pytest.approx((1 + 2 + 2 * 3 + 2 * 4 + 2 * 5) / 8)
    assert d.mass == pytest.approx(0.8)
    assert d.argmax == 3  # ties go to the lower score


def test_expected_score_with_unseen_digits_and_underflow():
    d = expected_score({"4": -1000.0, "5": -1000.0 + LN(3), "1": -math.inf})  # missing 2, 3
    assert d.expected == pytest.approx((4 * 1 + 5 * 3) / 4)
    assert d.argmax == 5
    assert d.mass == 0.0 or d.mass < 1e-300
    assert expected_score({"5": 0.0}).expected == 5.0
    none = expected_score({d: -math.inf for d in "12345"})
    assert none.expected is None and none.argmax is None and none.mass == 0.0
    assert expected_score({}).expected is None


@pytest.mark.parametrize("score, b", [(1.0, 1), (1.49, 1), (1.5, 2), (2.5, 3), (4.49, 4), (4.5, 5), (5.0, 5)])
def test_score_bin(score, b):
    assert score_bin(score) == b


def test_histogram_counts_unparsed():
    h = histogram(pl.Series([1.0, 4.6, 4.4, None, 5.0], dtype=pl.Float64))
    assert h == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 2, "unparsed": 1}


# ---------------------------------------------------------------------------------------------
# fake judge


class FakeJudge(Engine):
    """Rates a pair by the digit in its instruction ("... q3" -> 3): as text, or as log-probs.

    With `half_on_odd_seeds`, a generation with an odd seed rates half a point lower (q1 -> 0.5,
    out of range: unparsed), so that several samples of a pair disagree."""

    def __init__(self, fail_after: int | None = None, half_on_odd_seeds: bool = False):
        self.calls = 0
        self.fail_after = fail_after
        self.half_on_odd_seeds = half_on_odd_seeds
        self.prefixes: list[str] = []
        self.seeds: list[int] = []

    def _tick(self):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated crash")

    @staticmethod
    def _quality(msgs) -> int:
        body = msgs[-1]["content"].split("Instruction:\n", 1)[1]
        return int(body.split(" q", 1)[1][0])

    def generate(self, requests, sampling, *, desc="generate"):
        self._tick()
        self.seeds.append(sampling.seed)
        out = []
        for m in requests:
            q = self._quality(m)
            rating = f"{q - 0.5:g}" if self.half_on_odd_seeds and sampling.seed % 2 else str(q)
            out.append("I cannot decide." if q == 0 else f"Reasoning: fine.\n**Score:** {rating} (seed {sampling.seed})")
        return out

    def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
        self._tick()
        self.prefixes.append(assistant_prefix)
        out = []
        for m in requests:
            q = self._quality(m)
            if q == 0:  # the model puts no mass on any digit
                out.append({c: -math.inf for c in choices})
            else:  # 0.6 on q, 0.1 on each other digit, 0.5 of the vocabulary overall
                out.append({c: LN(0.5 * (0.6 if int(c) == q else 0.1)) for c in choices})
        return out


def _candidates(tmp_path: Path, qualities: list[int]) -> Path:
    rows = [{"segment_id": f"s{i:03d}", "instruction": f"Question number {i} q{q}", "output": f"Answer {i}.",
             "header": None, "doc_id": "d"} for i, q in enumerate(qualities)]
    p = tmp_path / "candidates.parquet"
    pl.DataFrame(rows).write_parquet(p)
    return p


QUALITIES = [5, 4, 3, 0, 1, 5, 2, 4, 5, 3, 0, 4]


def _score(tmp_path, cfg, engine=None, out="scores"):
    cand = _candidates(tmp_path, QUALITIES)
    d = tmp_path / out
    model = tmp_path / "m0"  # a fake judge's model: only its identity is read
    model.mkdir(exist_ok=True)
    m = run_score(cand, engine or FakeJudge(), cfg, PromptsConfig(), scores_path=d / "it1.parquet",
                  metrics_path=d / "it1.json", engine_cfg=EngineConfig(), model_dir=model)
    return m, pl.read_parquet(d / "it1.parquet")


def test_score_generate_mode_parses_the_judge_text(tmp_path):
    m, df = _score(tmp_path, ScoreConfig(mode="generate", chunk_size=5, seed=2))
    assert df.columns == ["segment_id", "instruction", "output", "score", "score_int", "digit_mass", "ratings", "raw",
                          "mode"]
    assert df.schema == pl.Schema(SCORE_SCHEMA)
    assert df["score_int"].to_list() == [None if q == 0 else q for q in QUALITIES]
    assert df["ratings"].to_list() == [[None if q == 0 else float(q)] for q in QUALITIES]
    assert df["score"][0] == 5.0 and df["raw"][0][0].endswith("(seed 2)") and df["raw"][5][0].endswith("(seed 3)")
    assert set(df["mode"]) == {"generate"}
    assert m["mode"] == m["requested_mode"] == "generate" and m["fallback"] is None
    assert m["n"] == 12 and m["parse_failures"] == 2 and m["parse_failure_rate"] == pytest.approx(2 / 12, abs=1e-4)
    assert m["samples"] == 1 and m["ratings_parsed"] == 10 and m["pairs_by_ratings_parsed"] == {"0": 2, "1": 10}
    assert m["histogram"] == {"1": 1, "2": 1, "3": 2, "4": 3, "5": 3, "unparsed": 2}
    assert m["mean"] == pytest.approx(sum(QUALITIES) / 10, abs=1e-4)
    assert json.loads((tmp_path / "scores" / "it1.json").read_text())["n"] == 12


def test_generate_mode_rates_each_pair_samples_times_and_keeps_the_mean(tmp_path):
    engine = FakeJudge(half_on_odd_seeds=True)
    cfg = ScoreConfig(mode="generate", chunk_size=5, seed=2, samples=3)
    m, df = _score(tmp_path, cfg, engine)
    # one call per sample; chunk i, sample j samples with seed + i * samples + j: distinct over the run
    assert engine.seeds == list(range(2, 2 + 3 * 3))
    assert df["raw"].to_list()[0] == [f"Reasoning: fine.\n**Score:** {r} (seed {s})" for r, s in (("5", 2), ("4.5", 3),
                                                                                                  ("5", 4))]
    assert df["raw"].to_list()[5][0].endswith("(seed 5)")  # chunk 1's first sample
    q5, q1, q0 = (df.row(i, named=True) for i in (0, 4, 3))
    assert q5["ratings"] == [5.0, 4.5, 5.0] and q5["score"] == pytest.approx(29 / 6) and q5["score_int"] == 5
    assert q1["ratings"] == [1.0, None, 1.0] and q1["score"] == 1.0  # an unparsed sample is left out of the mean
    assert q0["ratings"] == [None, None, None] and q0["score"] is None and q0["score_int"] is None
    assert df.row(5, named=True)["ratings"] == [4.5, 5.0, 4.5]  # chunk 1: seeds 5, 6, 7
    assert df.row(11, named=True)["ratings"] == [4.0, 3.5, 4.0]  # chunk 2: seeds 8, 9, 10
    assert m["samples"] == 3 and m["n"] == 12 and m["parse_failures"] == 2
    assert m["ratings_parsed"] == 3 * 10 - 1 and m["rating_parse_failure_rate"] == pytest.approx(7 / 36, abs=1e-4)
    assert m["pairs_by_ratings_parsed"] == {"0": 2, "1": 0, "2": 1, "3": 9}
    _, again = _score(tmp_path, cfg, FakeJudge(half_on_odd_seeds=True), out="again")
    assert again.equals(df)  # deterministic


def test_logprob_mode_ignores_samples(tmp_path):
    engine = FakeJudge()
    m, df = _score(tmp_path, ScoreConfig(mode="logprob", chunk_size=5, samples=4), engine)
    assert engine.calls == 1 + 3  # the probe, then one call per chunk
    assert df["ratings"].null_count() == df["raw"].null_count() == 12
    assert "samples" not in m and m["mode"] == m["requested_mode"] == "logprob" and m["fallback"] is None


def test_score_logprob_mode_stores_expected_argmax_and_mass(tmp_path):
    engine = FakeJudge()
    m, df = _score(tmp_path, ScoreConfig(mode="logprob", chunk_size=5), engine)
    assert engine.prefixes == [SCORE_PREFIX] * (1 + 3)  # the probe, then the three chunks
    q5 = df.row(0, named=True)
    assert q5["score"] == pytest.approx(0.6 * 5 + 0.1 * (1 + 2 + 3 + 4))  # 4.0
    assert q5["score_int"] == 5 and q5["digit_mass"] == pytest.approx(0.5) and q5["raw"] is None
    assert q5["ratings"] is None and set(df["mode"]) == {"logprob"}
    assert df.row(3, named=True)["score"] is None and df.row(3, named=True)["digit_mass"] == 0.0
    assert m["parse_failures"] == 2 and m["mean_digit_mass"] == pytest.approx(5 / 12, abs=1e-4)
    assert m["argmax_histogram"]["5"] == 3


def test_score_resume_after_crash_gives_identical_output(tmp_path):
    cfg = ScoreConfig(mode="generate", chunk_size=3, seed=7)
    _, ref = _score(tmp_path, cfg, out="ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _score(tmp_path, cfg, FakeJudge(fail_after=2), out="resumed")
    engine = FakeJudge()
    _, df = _score(tmp_path, cfg, engine, out="resumed")
    assert engine.calls == 2  # chunks 2 and 3 only
    assert df.equals(ref)


def test_parts_scored_by_another_model_are_discarded(tmp_path):
    cand = _candidates(tmp_path, QUALITIES)
    model = tmp_path / "m0"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"old")
    cfg = ScoreConfig(mode="logprob", chunk_size=3)
    kw = dict(scores_path=tmp_path / "s.parquet", metrics_path=tmp_path / "s.json", engine_cfg=EngineConfig(),
              model_dir=model)
    with pytest.raises(RuntimeError):
        run_score(cand, FakeJudge(fail_after=3), cfg, PromptsConfig(), **kw)  # the probe and two chunks
    assert len(list((tmp_path / "s.parquet.parts").glob("part-*.parquet"))) == 2
    (model / "weights.bin").write_bytes(b"retrained")
    engine = FakeJudge()
    run_score(cand, engine, cfg, PromptsConfig(), **kw)
    assert engine.calls == 1 + 4  # the probe, then every chunk again


def test_score_rejects_candidates_without_columns(tmp_path):
    p = tmp_path / "c.parquet"
    pl.DataFrame({"segment_id": ["a"], "instruction": ["x"]}).write_parquet(p)
    with pytest.raises(InputError, match=r"missing column\(s\) output"):
        run_score(p, FakeJudge(), ScoreConfig(), PromptsConfig(), scores_path=tmp_path / "s.parquet",
                  metrics_path=tmp_path / "s.json", engine_cfg=EngineConfig(), model_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# a backend without log-probabilities: the run falls back to generate mode


class TextOnly(Engine):
    """A backend that generates text only: choice_logprobs raises NotImplementedError."""

    name = "textonly"

    def __init__(self, fail_after: int | None = None, half_on_odd_seeds: bool = False):
        self.judge = FakeJudge(fail_after, half_on_odd_seeds)

    def generate(self, requests, sampling, *, desc="generate"):
        return self.judge.generate(requests, sampling, desc=desc)

    def choice_logprobs(self, requests, choices, *, assistant_prefix="", desc="score"):
        raise NotImplementedError("the textonly backend generates text only")


def test_text_only_logprob_run_falls_back_to_generate_with_one_warning(tmp_path, caplog):
    engine = TextOnly(half_on_odd_seeds=True)
    with caplog.at_level(logging.WARNING, logger="humpback"):
        m, df = _score(tmp_path, ScoreConfig(mode="logprob", chunk_size=5, seed=2, samples=3), engine)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "textonly backend" in warnings[0] and "score.sampling and score.samples (3) now apply" in warnings[0]
    assert m["mode"] == "generate" and m["requested_mode"] == "logprob"
    assert "the textonly backend generates text only" in m["fallback"]
    assert set(df["mode"]) == {"generate"} and df["digit_mass"].null_count() == 12
    assert engine.judge.seeds == list(range(2, 11))  # score.samples and score.seed apply: 3 chunks x 3 samples
    assert df.row(0, named=True)["ratings"] == [5.0, 4.5, 5.0]
    assert m["samples"] == 3 and m["parse_failures"] == 2


def _no_logprobs_endpoint(body, n):
    """An OpenAI-compatible server that ignores `logprobs`: text replies only."""
    q = int(body["messages"][0]["content"].split("Instruction:\n", 1)[1].split(" q", 1)[1][0])  # the user turn
    text = "Reasoning: fine.\nScore: 4.5" if q >= 4 else "I cannot decide." if q == 0 else f"Reasoning: meh.\nScore: {q}"
    return 200, {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}, {}


def test_endpoint_without_logprobs_falls_back_to_generate(tmp_path, caplog):
    server = StubServer(_no_logprobs_endpoint)
    openai = OpenAIConfig(base_url=server.url, model="judge", backoff=0.01, timeout=5.0, concurrency=2)
    engine_cfg = EngineConfig(backend="openai", openai=openai)
    cand = _candidates(tmp_path, QUALITIES)
    try:
        with OpenAIEngine(openai) as engine, caplog.at_level(logging.WARNING, logger="humpback"):
            m = run_score(cand, engine, ScoreConfig(mode="logprob", chunk_size=5), PromptsConfig(),
                          scores_path=tmp_path / "s.parquet", metrics_path=tmp_path / "s.json",
                          engine_cfg=engine_cfg, model_dir=tmp_path / "judge")
    finally:
        server.close()
    df = pl.read_parquet(tmp_path / "s.parquet")
    assert m["mode"] == "generate" and m["requested_mode"] == "logprob" and "no logprobs" in m["fallback"]
    assert json.loads((tmp_path / "s.json").read_text())["fallback"] == m["fallback"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][0].startswith(
        "the openai backend gives no log-probabilities")
    assert set(df["mode"]) == {"generate"}
    assert df["score"].to_list() == [None if q == 0 else 4.5 if q >= 4 else float(q) for q in QUALITIES]
    probes = [b for b in server.bodies if b.get("logprobs")]
    assert len(probes) == 1  # one pair asked once; every chunk then generates
    assert CURATION_ASK_SCORE in probes[0]["messages"][0]["content"]
    generated = [b for b in server.bodies if not b.get("logprobs")]
    assert len(generated) == 12 and all(CURATION_ASK_REASONING in b["messages"][0]["content"] for b in generated)


def test_a_fallback_runs_parts_are_never_reused_by_a_logprob_run(tmp_path):
    cand = _candidates(tmp_path, QUALITIES)
    model = tmp_path / "m0"
    model.mkdir()
    cfg = ScoreConfig(mode="logprob", chunk_size=3)
    kw = dict(scores_path=tmp_path / "s.parquet", metrics_path=tmp_path / "s.json", engine_cfg=EngineConfig(),
              model_dir=model)
    parts = tmp_path / "s.parquet.parts"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_score(cand, TextOnly(fail_after=2), cfg, PromptsConfig(), **kw)  # killed in its 3rd chunk
    assert len(list(parts.glob("part-*.parquet"))) == 2
    # the same run resumed: the fallback is found again and the fallback's parts are kept
    resumed = TextOnly()
    run_score(cand, resumed, cfg, PromptsConfig(), **kw)
    assert resumed.judge.calls == 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_score(cand, TextOnly(fail_after=2), cfg, PromptsConfig(), **kw)
    # a backend with log-probabilities, same params, model and engine settings: nothing is reused
    judge = FakeJudge()
    m = run_score(cand, judge, cfg, PromptsConfig(), **kw)
    assert judge.calls == 1 + 4  # the probe, then every chunk
    assert m["mode"] == "logprob" and m["fallback"] is None
    assert set(pl.read_parquet(tmp_path / "s.parquet")["mode"]) == {"logprob"}


# ---------------------------------------------------------------------------------------------
# selection


def _scored(scores):
    return pl.DataFrame({
        "segment_id": [f"s{i}" for i in range(len(scores))],
        "instruction": [f"i{i}" for i in range(len(scores))],
        "output": [f"o{i}" for i in range(len(scores))],
        "score": pl.Series(scores, dtype=pl.Float64),
    })


def test_select_integer_threshold_drops_unparsed():
    kept = select(_scored([5.0, 4.0, None, 3.0, 5.0]), SelectConfig(threshold=5))
    assert kept.columns == ["instruction", "output", "segment_id", "score"]
    assert kept["segment_id"].to_list() == ["s0", "s4"]
    assert select(_scored([5.0, 4.0, None, 3.0]), SelectConfig(threshold=4))["segment_id"].to_list() == ["s0", "s1"]


def test_select_fractional_threshold_on_expected_scores():
    kept = select(_scored([4.49, 4.5, 4.51, 3.9, float("nan")]), SelectConfig(threshold=4.5))
    assert kept["segment_id"].to_list() == ["s1", "s2"]


def test_select_cap_takes_best_then_segment_id():
    kept = select(_scored([4.0, 5.0, 4.5, 5.0, 4.5]), SelectConfig(threshold=4, max_examples=3))
    assert kept["segment_id"].to_list() == ["s1", "s3", "s2"]


def test_select_top_share_keeps_the_best_share_of_scored_rows():
    # 5 scored rows of 8 (a null and a NaN are unparsed ratings): half of 5 rounds up to 3, half of 8 would be 4
    scored = _scored([3.4, 3.6, None, 3.5, 3.3, 3.6, float("nan"), None])
    kept = select(scored, SelectConfig(threshold=1, top_share=0.5))
    assert kept["segment_id"].to_list() == ["s1", "s5", "s3"]
    assert select(scored, SelectConfig(threshold=3.55, top_share=0.5))["segment_id"].to_list() == ["s1", "s5"]
    assert select(scored, SelectConfig(threshold=1, top_share=0.5, max_examples=1))["segment_id"].to_list() == ["s1"]
    with pytest.raises(ConfigError, match=r"select.top_share: 1.5 is out of range \(must be >= 0 and <= 1\)"):
        convert({"top_share": 1.5}, SelectConfig, "select")


def test_select_empty_is_an_error_naming_threshold_and_range():
    with pytest.raises(EmptyResultError, match=r"threshold 4.5 keeps no pair out of 3 \(scores seen range 2.1..4.2\)"):
        select(_scored([2.1, 4.2, None]), SelectConfig(threshold=4.5))
    with pytest.raises(EmptyResultError, match="no row has a parsed score"):
        select(_scored([None, None]), SelectConfig(threshold=1))
    assert select(_scored([2.0]), SelectConfig(threshold=3, allow_empty=True)).height == 0


def test_run_select_metrics(tmp_path):
    p = tmp_path / "it1.parquet"
    _scored([5.0, 4.0, None, 3.0, 4.6]).with_columns(pl.lit("logprob").alias("mode")).write_parquet(p)
    m = run_select(p, SelectConfig(threshold=4.5), curated_path=tmp_path / "c.parquet", metrics_path=tmp_path / "m.json")
    assert m["kept"] == 2 and m["kept_share"] == 0.4 and m["parse_failures"] == 1 and m["mode"] == "logprob"
    assert m["histogram"] == {"1": 0, "2": 0, "3": 1, "4": 1, "5": 2, "unparsed": 1}
    assert json.loads((tmp_path / "m.json").read_text()) == m
    assert pl.read_parquet(tmp_path / "c.parquet")["segment_id"].to_list() == ["s0", "s4"]


def test_no_curation_keeps_every_candidate_scored_or_not(tmp_path):
    scores = [5.0, 1.0, None, 2.0, float("nan"), 4.0]
    kept = select(_scored(scores), SelectConfig(curate=False, threshold=4.5, top_share=0.5, max_examples=1))
    assert kept["segment_id"].to_list() == [f"s{i}" for i in range(6)]  # no rule applies, segment order
    assert kept["score"].to_list() == [5.0, 1.0, None, 2.0, None, 4.0]  # unscored: null, NaN included
    p = tmp_path / "it1.parquet"
    # on file an unscored row is null, as the score stage writes it (a NaN there is an input error)
    _scored(scores).with_columns(pl.col("score").fill_nan(None)).write_parquet(p)
    m = run_select(p, SelectConfig(curate=False), curated_path=tmp_path / "c.parquet", metrics_path=tmp_path / "m.json")
    assert m["curate"] is False and m["kept"] == 6 and m["kept_share"] == 1.0 and m["kept_unscored"] == 2
    assert m["kept_mean_score"] == 3.0  # over the scored rows only
    assert run_select(p, SelectConfig(threshold=4), curated_path=tmp_path / "c.parquet",
                      metrics_path=tmp_path / "m.json")["curate"] is True


def _many(n: int) -> pl.DataFrame:
    """n scored rows, the score rising with the row: the top k are the last k rows."""
    return _scored([1 + 4 * i / (n - 1) for i in range(n)])


def test_sample_draws_exactly_n_kept_pairs_at_random_not_the_best():
    scored = _many(200)
    cfg = SelectConfig(threshold=1, top_share=0.5, sample=20)  # the best 100, then 20 of them
    kept = select(scored, cfg)
    ids = kept["segment_id"].to_list()
    best = set(select(scored, SelectConfig(threshold=1, top_share=0.5))["segment_id"])
    assert len(ids) == len(set(ids)) == 20 and set(ids) <= best  # drawn from what the rules kept
    top20 = set(scored.sort("score", descending=True).head(20)["segment_id"])
    assert set(ids) != top20 and len(set(ids) & top20) < 15  # random, not best-first
    assert kept["score"].min() < 4.0 < kept["score"].max()  # the quality mix of the kept half
    assert select(scored, cfg)["segment_id"].to_list() == ids  # the same rows on a rerun
    other = select(scored, SelectConfig(threshold=1, top_share=0.5, sample=20, seed=1))["segment_id"].to_list()
    assert len(other) == 20 and set(other) != set(ids)  # another seed, other rows
    # without curation the sample comes from every candidate, unscored ones included
    unscored = _scored([None] * 30)
    assert select(unscored, SelectConfig(curate=False, sample=30)).height == 30


def test_sample_larger_than_the_kept_set_is_an_error_naming_file_n_and_kept():
    with pytest.raises(EmptyResultError) as e:
        select(_many(40), SelectConfig(threshold=1, top_share=0.5, sample=21), source="data/scores/it2.parquet")
    msg = str(e.value)
    assert msg.startswith("data/scores/it2.parquet: select.sample is 21 but only 20 of 40 pairs were kept")
    assert "top_share 0.5" in msg
    assert select(_many(40), SelectConfig(threshold=1, top_share=0.5, sample=20)).height == 20  # exactly enough
    with pytest.raises(EmptyResultError, match=r"select.sample is 41 but only 40 of 40 .*\(curate: false\)"):
        select(_many(40), SelectConfig(curate=False, sample=41))


def test_run_select_records_the_sample_in_metrics_and_table(tmp_path):
    from humpback.curation.selection import SAMPLE_KEY

    p = tmp_path / "it1.parquet"
    _many(50).write_parquet(p)
    m = run_select(p, SelectConfig(threshold=1, top_share=0, sample=7, seed=3), curated_path=tmp_path / "c.parquet",
                   metrics_path=tmp_path / "m.json")
    assert (m["kept"], m["sample"], m["sample_seed"]) == (7, 7, 3)
    assert pl.read_parquet(tmp_path / "c.parquet").height == 7
    assert pl.read_parquet_metadata(tmp_path / "c.parquet")[SAMPLE_KEY] == "7"  # what train@ reads N from
    run_select(p, SelectConfig(threshold=1), curated_path=tmp_path / "c.parquet", metrics_path=tmp_path / "m.json")
    assert SAMPLE_KEY not in pl.read_parquet_metadata(tmp_path / "c.parquet")


# ---------------------------------------------------------------------------------------------
# the stage scripts


def test_score_and_select_stages_end_to_end(tmp_path, monkeypatch, capsys):
    (tmp_path / "data/augmented").mkdir(parents=True)
    _candidates(tmp_path / "data/augmented", QUALITIES)
    (tmp_path / "models/m0").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text(
        "score:\n  mode: generate\n  chunk_size: 4\n  sampling: {temperature: 0.7, top_p: 0.9, max_new_tokens: 64}\n"
        "select:\n  threshold: 5\n"
    )
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(loader, "load_engine", lambda model, cfg: seen.append(model) or FakeJudge())
    dvc_stage.run("score", "it1")
    assert seen == [Path("models/m0")]
    assert pl.read_parquet("data/scores/it1.parquet").height == 12
    score_metrics = json.loads(Path("metrics/scores/it1.json").read_text())
    assert score_metrics["model"] == "models/m0" and score_metrics["requested_mode"] == "generate"

    dvc_stage.run("select", "it1")
    curated = pl.read_parquet("data/curated/it1.parquet")
    assert curated["segment_id"].to_list() == ["s000", "s005", "s008"]
    assert json.loads(Path("metrics/curation/it1.json").read_text())["kept"] == 3

    Path("params.yaml").write_text("select:\n  threshold: 6\n")  # above the 5-point scale
    with pytest.raises(SystemExit) as e:
        dvc_stage.run("select", "it1")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "select.threshold: 6 is out of range (must be >= 0 and <= 5)" in err
    assert "Traceback" not in err


def test_select_stage_applies_the_iterations_own_overrides(tmp_path, monkeypatch, capsys):
    from humpback.curation.selection import SAMPLE_KEY

    (tmp_path / "data/scores").mkdir(parents=True)
    for it in ("it1", "it2"):
        _scored([5.0, 4.0, None, 3.0, 4.6, 5.0, 4.2, 4.8]).write_parquet(tmp_path / f"data/scores/{it}.parquet")
    (tmp_path / "params.yaml").write_text(
        "select:\n  threshold: 4\n  top_share: 0\n"
        "iterations:\n  it1: {prev: m0}\n  it2: {prev: it1, select: {threshold: 4.5, sample: 3}}\n")
    monkeypatch.chdir(tmp_path)
    dvc_stage.run("select", "it1")
    dvc_stage.run("select", "it2")
    it1 = pl.read_parquet("data/curated/it1.parquet")
    assert it1["segment_id"].to_list() == ["s0", "s1", "s4", "s5", "s6", "s7"]  # the section's threshold 4
    it2 = pl.read_parquet("data/curated/it2.parquet")
    assert it2.height == 3 and set(it2["segment_id"]) <= {"s0", "s4", "s5", "s7"}  # >= 4.5, then 3 at random
    assert pl.read_parquet_metadata("data/curated/it2.parquet")[SAMPLE_KEY] == "3"
    m1, m2 = (json.loads(Path(f"metrics/curation/{it}.json").read_text()) for it in ("it1", "it2"))
    assert (m1["threshold"], m1["sample"], m2["threshold"], m2["sample"]) == (4.0, 0, 4.5, 3)

    Path("params.yaml").write_text("iterations:\n  it1: {prev: m0}\n  it2: {prev: it1, select: {sample: 5}}\n"
                                   "select:\n  threshold: 4.5\n  top_share: 0\n")
    with pytest.raises(SystemExit) as e:
        dvc_stage.run("select", "it2")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "data/scores/it2.parquet: select.sample is 5 but only 4 of 8 pairs were kept" in err
    assert "Traceback" not in err


def test_params_yaml_sections_load():
    from humpback.config import load_section

    assert isinstance(load_section("score", REPO / "params.yaml"), ScoreConfig)
    assert isinstance(load_section("select", REPO / "params.yaml"), SelectConfig)
    assert isinstance(load_section("score", REPO / "params.yaml").sampling, SamplingParams)


def test_select_messages_are_whole(tmp_path):
    with pytest.raises(EmptyResultError) as e:
        select(_scored([2.0, None]), SelectConfig(threshold=4.5))
    assert str(e.value) == ("scores: threshold 4.5 keeps no pair out of 2 (scores seen range 2..2); "
                            "lower select.threshold or set select.allow_empty: true")
    with pytest.raises(EmptyResultError) as e:
        select(_scored([None, None]), SelectConfig(threshold=4.5), source="f.parquet")
    assert str(e.value) == ("f.parquet: threshold 4.5 keeps no pair out of 2 (no row has a parsed score); "
                            "lower select.threshold or set select.allow_empty: true")
    with pytest.raises(EmptyResultError) as e:
        select(_scored([5.0, 2.0]), SelectConfig(threshold=4.5, sample=2))
    assert str(e.value) == ("scores: select.sample is 2 but only 1 of 2 pairs were kept (threshold 4.5, top_share 0.5, "
                            "max_examples 0); lower select.sample or keep more pairs")


def test_a_sample_of_one(tmp_path):
    kept = select(_scored([5.0, 4.0, 4.5]), SelectConfig(threshold=4, sample=1, seed=0))
    assert kept.height == 1 and kept["segment_id"][0] in {"s0", "s1", "s2"}


def test_run_select_metrics_whole(tmp_path):
    p = tmp_path / "one.parquet"
    _scored([4.0, 5.0, 1.0]).with_columns(pl.Series("mode", ["generate"] * 3)).head(3).write_parquet(p)
    m = run_select(p, SelectConfig(threshold=4, top_share=0.5, max_examples=7), curated_path=tmp_path / "c.parquet",
                   metrics_path=tmp_path / "m.json")
    assert m == {"mode": "generate", "curate": True, "threshold": 4, "max_examples": 7, "top_share": 0.5, "sample": 0,
                 "sample_seed": 0, "n": 3, "kept": 2, "kept_share": 0.6667, "kept_unscored": 0, "parse_failures": 0,
                 "histogram": {"1": 1, "2": 0, "3": 0, "4": 1, "5": 1, "unparsed": 0}, "kept_mean_score": 4.5}
    # a file of one row; a mean that needs rounding; nothing scored among the kept
    single = tmp_path / "single.parquet"
    _scored([4.0]).with_columns(pl.lit("logprob").alias("mode")).write_parquet(single)
    assert run_select(single, SelectConfig(threshold=4), curated_path=tmp_path / "c.parquet",
                      metrics_path=tmp_path / "m.json")["mode"] == "logprob"
    thirds = tmp_path / "thirds.parquet"
    _scored([3.0, 3.0, 4.0]).write_parquet(thirds)
    m = run_select(thirds, SelectConfig(threshold=3, top_share=0), curated_path=tmp_path / "c.parquet", metrics_path=tmp_path / "m.json")
    assert m["kept_mean_score"] == 3.3333 and m["mode"] is None
    none = tmp_path / "none.parquet"
    _scored([None, None, 5.0]).write_parquet(none)
    m = run_select(none, SelectConfig(curate=False, top_share=0), curated_path=tmp_path / "c.parquet",
                   metrics_path=tmp_path / "m.json")
    assert (m["kept"], m["kept_unscored"], m["parse_failures"], m["kept_share"]) == (3, 2, 2, 1.0)
    m = run_select(none, SelectConfig(threshold=5, top_share=0), curated_path=tmp_path / "c.parquet",
                   metrics_path=tmp_path / "m.json")
    assert m["kept_share"] == 0.3333 and m["kept_mean_score"] == 5.0


def test_run_select_with_no_scored_row_kept(tmp_path):
    p = tmp_path / "unscored.parquet"
    _scored([None, None]).write_parquet(p)
    m = run_select(p, SelectConfig(curate=False), curated_path=tmp_path / "c.parquet", metrics_path=tmp_path / "m.json")
    assert m["kept"] == 2 and m["kept_mean_score"] is None and m["parse_failures"] == 2

"""The candidate browser's data (rows, verdicts, reasons, the sample) and its page's escaping;
tests/test_candidates_browser.py drives the page in a real browser."""

import json
import re

import numpy as np
import polars as pl
import pytest
from candidates_data import HOSTILE, realistic, write_outputs

from humpback.curation.config import SelectConfig
from humpback.curation.selection import explain, select
from humpback.errors import EmptyResultError, InputError
from humpback.evaluation.candidates_page import Caps, _sample, build_candidates_page, collect, script_json


def _generated(instructions: list[str], segments: list[str] | None = None) -> pl.DataFrame:
    n = len(instructions)
    segments = segments or [f"Segment {i}: " + "plain prose about gardening and tools. " * 4 for i in range(n)]
    return pl.DataFrame({"segment_id": [f"s{i:03d}" for i in range(n)], "raw_instruction": instructions,
                         "text": segments, "header": ["h"] * n, "doc_id": ["d"] * n})


def _asks(n: int) -> list[str]:
    return [f"How do I look after garden tool number {i} in winter?" for i in range(n)]


@pytest.mark.parametrize("cfg", [SelectConfig(threshold=3, top_share=0), SelectConfig(threshold=1, top_share=0.3),
                                 SelectConfig(threshold=2, max_examples=4, top_share=0),
                                 SelectConfig(threshold=1, top_share=0, sample=5, seed=3),
                                 SelectConfig(curate=False), SelectConfig(curate=False, sample=6)])
def test_explain_keeps_exactly_what_select_keeps(cfg):
    rng = np.random.default_rng(0)
    scores = [None if rng.random() < 0.1 else float(round(rng.uniform(1, 5), 1)) for _ in range(40)]
    scored = pl.DataFrame({"segment_id": [f"s{i}" for i in range(40)], "instruction": ["i"] * 40,
                           "output": ["o"] * 40, "score": scores}, schema_overrides={"score": pl.Float64})
    v = explain(scored, cfg)
    assert set(v.filter("kept")["segment_id"]) == set(select(scored, cfg)["segment_id"])
    assert (v["reason"] == "kept").to_list() == v["kept"].to_list()
    by = dict(zip(v["segment_id"], v["reason"], strict=True))
    for sid, s in zip(scored["segment_id"], scores, strict=True):
        if cfg.curate and s is None:
            assert by[sid] == "unparsed"
        elif cfg.curate and s < cfg.threshold:
            assert by[sid] == "below_threshold"
    if cfg.sample:
        assert {"kept", "not_sampled"} <= set(v["reason"]) <= {"kept", "not_sampled", "unparsed", "below_threshold"}
    if not cfg.curate:
        assert set(v["reason"]) <= {"kept", "not_sampled"}
    elif cfg.top_share or cfg.max_examples:
        assert "beyond_cap" in set(v["reason"])
        assert "best" in v.filter(pl.col("reason") == "beyond_cap")["detail"][0]


def test_rows_carry_each_iterations_score_verdict_and_reason(tmp_path):
    instructions = _asks(6) + ["Write an instruction for this text.", ""]
    p = write_outputs(tmp_path, _generated(instructions), {
        "it1": [5.0, 4.0, 2.0, None, 3.0, 4.5], "it2": [1.0, 4.0, 4.0, 4.0, 4.0, 2.0]},
        select={"it1": SelectConfig(threshold=3, top_share=0), "it2": SelectConfig(threshold=3, max_examples=2, top_share=0)})
    data = collect(["it1", "it2"], p)
    rows = {r["id"]: r for r in data["rows"]}
    assert [r["id"] for r in data["rows"]] == [f"s{i:03d}" for i in range(8)]  # candidates, then augment's rejects
    assert rows["s000"]["it"][0][:3] == [5.0, True, "kept"] and rows["s000"]["it"][1][:3] == [1.0, False, "below_threshold"]
    assert rows["s002"]["it"][0][:3] == [2.0, False, "below_threshold"]
    assert rows["s003"]["it"][0][:3] == [None, False, "unparsed"]
    # it2 keeps the best two of the four 4.0s, ties by segment_id: s001 s002; s003 s004 are beyond the cap
    assert [rows[s]["it"][1][2] for s in ("s001", "s002", "s003", "s004")] == ["kept", "kept", "beyond_cap", "beyond_cap"]
    assert "max_examples 2" in rows["s003"]["it"][1][3]
    assert rows["s006"]["aug"][0] == "meta_instruction" and rows["s007"]["aug"][0] == "empty"
    assert rows["s006"]["it"] == [None, None] and rows["s000"]["aug"] is None
    assert rows["s000"]["ins"] == instructions[0] and rows["s000"]["seg"].startswith("Segment 0: ")
    assert data["meta"]["counts"] == {"candidates": 6, "kept": 5, "dropped": 1, "augment_rejected": 2}


def _page_data(page: str):
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_hostile_text_stays_data(tmp_path):
    assert "<" not in script_json({"x": HOSTILE}) and json.loads(script_json({"x": HOSTILE})) == {"x": HOSTILE}
    segments = [HOSTILE * 3, "A calm paragraph about garden tools, their care and storage. " * 3]
    p = write_outputs(tmp_path, _generated([f"Explain {HOSTILE}", "How do I store garden tools?"], segments),
                      {"it1": [4.0, 5.0]}, select={"it1": SelectConfig(threshold=1, top_share=0)})
    out = tmp_path / "candidates.html"
    data = build_candidates_page(["it1"], p, out)
    page = out.read_text()
    assert "<img" not in page and "<!--" not in page and "\u2028" not in page
    assert page.count("</script>") == 2  # the template's two script elements, no more
    assert _page_data(page) == data
    assert [r["id"] for r in data["rows"] if HOSTILE in r["seg"] and HOSTILE[:-2] in r["ins"]] == ["s000"]


def test_the_sample_is_capped_deterministic_and_stated(tmp_path):
    n = 30
    p = write_outputs(tmp_path, _generated(_asks(n) + ["", "Response:", "???"]), {"it1": [float(1 + i % 5) for i in range(n)]},
                      select={"it1": SelectConfig(threshold=4, top_share=0)})
    caps = Caps(kept=4, dropped=3, augment_rejected=1, text=20)
    data = build_candidates_page(["it1"], p, tmp_path / "c.html", caps)
    assert data["meta"]["counts"] == {"candidates": n, "kept": 12, "dropped": 18, "augment_rejected": 3}
    assert data["meta"]["shown"] == {"kept": 4, "dropped": 3, "augment_rejected": 1}
    rows = data["rows"]
    assert sum(r["aug"] is None and r["it"][0][1] for r in rows) == 4 and len(rows) == 8
    assert all(len(r["seg"]) == 20 and r["len"] > 20 for r in rows if r["aug"] is None)
    assert [r["id"] for r in collect(["it1"], p, caps)["rows"]] == [r["id"] for r in rows]  # the same every run
    page = (tmp_path / "c.html").read_text()
    assert "4 of 12 candidates kept in some iteration" in page and "smallest BLAKE2b hash" in page
    # a row's membership depends on its id alone: more rows never push a sampled row out unless they hash lower
    ids = [f"id{i}" for i in range(200)]
    small, big = _sample(ids[:100], 10), _sample(ids, 10)
    assert set(big) & set(ids[:100]) <= set(small)
    whole = collect(["it1"], p)
    assert len(whole["rows"]) == n + 3 and "every row is shown" not in page


def test_stale_or_mismatched_inputs_are_errors(tmp_path):
    p = write_outputs(tmp_path, _generated(_asks(5)), {"it1": [5.0, 4.0, 3.0, 2.0, 1.0]},
                      select={"it1": SelectConfig(threshold=3, top_share=0)})
    curated = p.curated / "it1.parquet"
    pl.read_parquet(curated).head(2).write_parquet(curated)
    with pytest.raises(InputError, match=r"it1.parquet: its kept rows are not the ones .* rerun select@it1"):
        collect(["it1"], p)
    metrics = p.curation_metrics / "it1.json"
    metrics.write_text(json.dumps({"histogram": {}, "kept": 2, "threshold": 3}))
    with pytest.raises(InputError, match=r"it1.json: missing key\(s\) curate, max_examples"):
        collect(["it1"], p)
    p = write_outputs(tmp_path / "b", _generated(_asks(5)), {"it1": [5.0, 4.0, 3.0, 2.0, 1.0]},
                      select={"it1": SelectConfig(threshold=3, top_share=0)})
    scored = pl.read_parquet(p.scored / "it1.parquet")  # a dropped row of another candidate set
    scored.with_columns(pl.Series("segment_id", [*scored["segment_id"][:4], "other"])).write_parquet(
        p.scored / "it1.parquet")
    with pytest.raises(InputError, match=r"scores/it1.parquet: its rows are not the candidates"):
        collect(["it1"], p)
    with pytest.raises(InputError, match=r"scores/it2.parquet: file not found"):
        collect(["it2"], p)


def test_realistic_outputs_build_a_page(tmp_path):
    data = build_candidates_page(["it1", "it2"], realistic(tmp_path), tmp_path / "c.html")
    reasons = {r["aug"][0] for r in data["rows"] if r["aug"]}
    assert {"echo", "meta_instruction", "empty"} <= reasons
    assert {r["it"][1][2] for r in data["rows"] if not r["aug"]} == {"kept", "below_threshold", "beyond_cap", "unparsed"}


def _scored(scores: list[float | None]) -> pl.DataFrame:
    """A scored table with ids a, b, c, ... in the order of `scores` (None: unparsed)."""
    n = len(scores)
    return pl.DataFrame({"segment_id": list("abcdefghij"[:n]), "instruction": ["i"] * n, "output": ["o"] * n,
                         "score": scores}, schema_overrides={"score": pl.Float64})


def test_explain_details_name_the_rule_and_its_numbers():
    """A hand-worked case: 6 rows, one unparsed, threshold 3 (a score equal to it passes), the best
    half of the 5 scored (3 rows) at most 2 rows, then a sample of 1."""
    scored = _scored([5.0, 4.5, 4.0, 3.0, 2.0, None])
    cfg = SelectConfig(threshold=3, top_share=0.5, max_examples=2, sample=1, seed=0)
    v = explain(scored, cfg, source="scores/it1.parquet")
    rows = {r["segment_id"]: (r["reason"], r["detail"]) for r in v.iter_rows(named=True)}
    caps = "max_examples 2, top_share 0.5 of 5 scored = 3"
    assert rows["f"] == ("unparsed", "no rating parsed: an unscored row is never kept")
    assert rows["e"] == ("below_threshold", "score < threshold 3")
    assert rows["d"] == ("beyond_cap", f"score >= threshold 3 but not among the best ({caps})")
    assert rows["c"] == ("beyond_cap", f"score >= threshold 3 but not among the best ({caps})")
    kept = [k for k, (reason, _) in rows.items() if reason == "kept"]
    drawn = [k for k, (reason, _) in rows.items() if reason == "not_sampled"]
    assert len(kept) == 1 and sorted(kept + drawn) == ["a", "b"]
    assert rows[kept[0]][1] == f"score >= threshold 3 and among the best ({caps}); drawn in the random sample of 1 (seed 0)"
    assert rows[drawn[0]][1] == "passed the threshold and caps but not drawn in the random sample of 1 (seed 0) out of 2"
    plain = explain(scored, SelectConfig(curate=False))
    assert set(plain["detail"]) == {"select.curate is false: every candidate kept"} and plain["kept"].all()
    with pytest.raises(InputError, match=r"scores/it1\.parquet.*duplicate segment_id: a row's verdict would be ambiguous"):
        explain(pl.concat([scored, scored.head(1)]), cfg, source="scores/it1.parquet")


@pytest.mark.parametrize(("cfg", "kept_detail"), [
    (SelectConfig(threshold=3, top_share=0, max_examples=0), "score >= threshold 3"),
    (SelectConfig(threshold=3, top_share=0, max_examples=1), "score >= threshold 3 and among the best (max_examples 1)"),
    (SelectConfig(threshold=3, top_share=0.5, max_examples=0),
     "score >= threshold 3 and among the best (top_share 0.5 of 5 scored = 3)"),
])
def test_explain_names_only_the_caps_that_are_set(cfg, kept_detail):
    scored = _scored([5.0, 4.5, 4.0, 3.0, 2.0, None])
    v = explain(scored, cfg)
    assert set(v.filter("kept")["detail"]) == {kept_detail}
    caps = kept_detail.partition(" and among the best ")[2]
    assert set(v.filter(pl.col("reason") == "beyond_cap")["detail"]) == (
        {f"score >= threshold 3 but not among the best {caps}"} if caps else set())


def test_explain_gives_verdicts_where_select_would_refuse():
    """Nothing passes: select stops the pipeline, explain still says why for every row. A sample
    larger than what passed cannot be drawn, and the error names the table and the numbers."""
    scored = _scored([2.0, 1.0, None])
    v = explain(scored, SelectConfig(threshold=4, top_share=0, allow_empty=False))
    assert v["reason"].to_list() == ["below_threshold", "below_threshold", "unparsed"] and not v["kept"].any()
    with pytest.raises(EmptyResultError) as err:
        explain(scored, SelectConfig(threshold=1, top_share=0, sample=5), source="scores/it2.parquet")
    assert str(err.value) == ("scores/it2.parquet: select.sample is 5 but only 2 of 3 pairs were kept "
                              "(threshold 1, top_share 0, max_examples 0); lower select.sample or keep more pairs")
    with pytest.raises(InputError) as err:
        explain(pl.concat([scored, scored.head(1)]), SelectConfig())
    assert str(err.value) == "scores: duplicate segment_id: a row's verdict would be ambiguous"

"""Quality filters (one reason each) and exact / near deduplication."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash, MinHashLSH

from humpback.corpus.config import CorpusConfig
from humpback.corpus.dedup import ExactDedup, NearDedup, normalise, shingle_hashes, text_hashes
from humpback.corpus.filters import FILTER_ORDER, apply_filters, bad_header_pattern

PROSE = ("Bread dough needs time to rest so the gluten can relax before shaping. "
         "A warm kitchen shortens the rise, while a cool one gives a deeper flavour. ") * 4


def run(rows: list[dict], **cfg) -> list[str | None]:
    base = {"header": "Resting the dough", "text": PROSE, "whole_doc": False, "headerless_ok": False}
    frame = pl.DataFrame([{**base, **r} for r in rows]).with_columns(
        n_chars=pl.col("text").str.len_chars().cast(pl.Int32))
    return apply_filters(frame, CorpusConfig(**{"min_chars": 100, "max_chars": 1000, **cfg}))["reason"].to_list()


def test_good_segment_passes():
    assert run([{}]) == [None]


@pytest.mark.parametrize(("row", "reason"), [
    ({"whole_doc": True, "header": ""}, "headerless_doc"),
    ({"header": ""}, "empty_header"),
    ({"header": "2024 - 05"}, "empty_header"),
    ({"text": "Too short."}, "too_short"),
    ({"text": PROSE * 3}, "too_long"),
    ({"header": "Subscribe to our Newsletter"}, "bad_header"),
    ({"header": "Quick   Links"}, "bad_header"),
    ({"header": "License"}, "bad_header"),
    ({"header": "v2.1.0 (2024-05-01)"}, "version_header"),
    ({"header": "BREAKING NEWS TODAY"}, "header_caps"),
    ({"text": "1234 5678 9012 3456 | 7890 1234 5678 | " * 5}, "low_alpha"),
    ({"text": "\n".join(f"[Page number {i}](https://example.com/{i})" for i in range(8))}, "link_lines"),
    ({"text": "Home page of the site\nAbout the company\n" * 6 + "One real line of text here."}, "dup_lines"),
])
def test_each_filter_names_its_reason(row, reason):
    assert run([row]) == [reason]


def test_filters_are_configurable():
    assert run([{"whole_doc": True, "header": "", "headerless_ok": True}]) == [None]  # allowed headerless doc
    assert run([{"header": ""}], reject_empty_header=False) == [None]
    assert run([{"header": "License"}], bad_headers=[]) == [None]
    assert run([{"header": "2.0 notes"}], reject_version_headers=False) == [None]
    assert run([{"header": "API"}, {"header": "NASA Missions"}]) == [None, None]  # few letters / under the share
    assert run([{"text": PROSE * 3}], max_chars=0) == [None]


def test_first_failing_filter_wins_and_order_is_documented():
    assert run([{"header": "", "text": "short"}]) == ["empty_header"]
    assert FILTER_ORDER.index("empty_header") < FILTER_ORDER.index("too_short")


def test_bad_header_pattern_matches_whole_words_only():
    pattern = bad_header_pattern(["menu", "log in"])
    s = pl.Series(["Main Menu", "Menus and more", "Log  In", "catalog information", ""])
    assert s.str.contains(pattern).to_list() == [True, False, True, False, False]
    assert bad_header_pattern([" ", ""]) is None


def test_exact_dedup_normalises_and_spans_batches():
    texts = pl.Series(["Hello, World!", "hello world", "Hello   world?!", "Something else"])
    dedup = ExactDedup()
    norm = pl.select(normalise(pl.lit(texts))).to_series()
    assert dedup.check(text_hashes(norm[:2]), ["a", "b"]) == [None, "a"]
    assert dedup.check(text_hashes(norm[2:]), ["c", "d"]) == ["a", None]  # next batch sees the first batch


def _words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(["river", "stone", "bread", "light", "engine", "garden", "signal", "market", "winter",
                        "paper", "island", "music", "doctor", "window", "forest", "battery"]) + str(rng.randint(0, 40))
            for _ in range(n)]


def test_near_dedup_catches_light_edits_not_different_text():
    base = _words(300, 1)
    edited = list(base)
    edited[150] = "changed"
    other = _words(300, 2)
    texts = pl.Series([" ".join(base), " ".join(other), " ".join(edited)])
    near = NearDedup(num_perm=64, threshold=0.8, shingle_size=5)
    assert near.check(texts[:2], ["base", "other"]) == [None, None]
    assert near.check(texts[2:], ["edited"]) == ["base"]


def test_minhash_signatures_equal_datasketch():
    texts = pl.Series(["a b c d e f g", "one two", "", " ".join(_words(120, 3))])
    near = NearDedup(num_perm=32, seed=7, shingle_size=3)
    sig = near.signatures(texts, chunk=16)  # tiny blocks exercise the block boundaries
    hv, doc = shingle_hashes(texts, 3)
    assert [int((doc == i).sum()) for i in range(4)] == [5, 1, 1, 118]
    for i in range(len(texts)):
        ref = MinHash(num_perm=32, seed=7, scheme="affine32", hashfunc=lambda x: x)
        ref.update_batch([int(v) for v in hv[doc == i]])
        assert (ref.hashvalues == sig[i]).all()


def test_shingles_do_not_cross_texts():
    a, _ = shingle_hashes(pl.Series(["x y", "z w"]), 2)
    b, _ = shingle_hashes(pl.Series(["x y"]), 2)
    c, _ = shingle_hashes(pl.Series(["z w"]), 2)
    assert list(a) == [b[0], c[0]]


def test_shingle_and_signature_hashes_are_pinned():
    """The recorded corpus (dvc.lock) depends on these exact values: a change of the word hash, its
    32-bit mask, the shingle combination or the permutations changes which segments are near copies.
    (Polars' hash is stable for the pinned polars; an upgrade that changes it fails here first.)"""
    texts = pl.Series(["the quick brown fox jumps", "lazy dog"])
    hv, doc = shingle_hashes(texts, 2)
    assert hv.tolist() == [996239916, 2761667653, 533726079, 4028060559, 3985106258] and doc.tolist() == [0, 0, 0, 0, 1]
    assert hv.dtype == np.uint32
    sig = NearDedup(num_perm=8, threshold=0.5, seed=3, shingle_size=2).signatures(texts)
    assert sig.dtype == np.uint32 and sig.shape == (2, 8)
    assert sig[:, :3].tolist() == [[516536374, 957637582, 141123837], [1547294346, 3800371484, 3660348869]]
    assert text_hashes(pl.Series(["a b", "c"])) == [13078424131579018198, 11849191238639012789]


def test_shingle_size_bounds():
    for k in (1, 8):
        hv, doc = shingle_hashes(pl.Series(["a b c d e f g h i j"]), k)
        assert len(hv) == 10 - k + 1 and set(doc.tolist()) == {0}
    for k in (0, 9):
        with pytest.raises(ValueError) as e:
            shingle_hashes(pl.Series(["a b"]), k)
        assert str(e.value) == "shingle_size must be between 1 and 8"


@pytest.mark.parametrize("text,share", [
    ("", 0.0),  # no line at all
    ("http://x.y", 1.0),  # one line, a link
    ("http://x.y abc", 1.0),  # three letters besides the link: still a link line
    ("http://x.y abcd", 0.0),  # four: a sentence with a link in it
    ("[a](http://x)\nplain words here", 0.5),
    ("ok\nhttp://x", 0.5),  # a short line without a link is not a link line
    ("see\n\n[x](u)\n  \n|badge|", 2 / 3),  # blank lines do not count
])
def test_link_line_share(text, share):
    from humpback.corpus.filters import link_line_share

    got = pl.DataFrame({"t": [text]}).select(link_line_share(pl.col("t"))).to_series().to_list()
    assert got == [pytest.approx(share)]


def _text(n: int) -> str:
    return ("abcdefghij" * (n // 10 + 1))[:n]


@pytest.mark.parametrize(("rows", "cfg", "reasons"), [
    # lengths: the bounds themselves pass
    ([{"text": _text(100)}, {"text": _text(99)}], {}, [None, "too_short"]),
    ([{"text": _text(1000)}, {"text": _text(1001)}], {}, [None, "too_long"]),
    # capitals: a share at the limit passes, above it fails; under the minimum letters never fails
    ([{"header": "ABCDEFGhij"}, {"header": "ABCDEFGHij"}], {}, [None, "header_caps"]),
    ([{"header": "ABCDE"}, {"header": "ABCD"}], {}, ["header_caps", None]),
    ([{"header": "ABCDEF"}], {"header_caps_min_letters": 7}, [None]),
    ([{"header": "ABcd"}], {"header_caps_min_letters": 0, "max_header_caps": 0.4}, ["header_caps"]),
    # letters: half the characters is enough at min_alpha_share 0.5
    ([{"text": "ab12" * 40}, {"text": "ab123" * 40}], {}, [None, "low_alpha"]),
    ([{"text": "ab123" * 40}], {"min_alpha_share": 0.4}, [None]),
    # link lines: 3 of 10 lines is the limit at 0.3, 4 of 10 is over
    ([{"text": "\n".join(["[x](https://e.com)"] * 3 + [PROSE[:80]] * 7)}], {"max_dup_line_share": 1}, [None]),
    ([{"text": "\n".join(["[x](https://e.com)"] * 4 + [PROSE[:80]] * 6)}], {"max_dup_line_share": 1}, ["link_lines"]),
    ([{"text": "\n".join(["[x](https://e.com)"] * 4 + [PROSE[:80]] * 6)}],
     {"max_dup_line_share": 1, "max_link_line_share": 0.4}, [None]),
    # repeated lines: 3 repeats of 10 worded lines is the limit at 0.3, 4 is over
    ([{"text": "\n".join([f"line number {w} of the text" for w in "abcdefg"] + ["line number a of the text"] * 3)}],
     {}, [None]),
    ([{"text": "\n".join([f"line number {w} of the text" for w in "abcdef"] + ["line number a of the text"] * 4)}],
     {}, ["dup_lines"]),
    ([{"text": "\n".join([f"line number {w} of the text" for w in "abcdef"] + ["line number a of the text"] * 4)}],
     {"max_dup_line_share": 0.4}, [None]),
])
def test_each_threshold_is_inclusive_and_configurable(rows, cfg, reasons):
    assert run(rows, **cfg) == reasons


def test_a_whole_document_is_headerless_unless_its_source_allows_it():
    # whole_doc: the segmenter found no header in the document (its title may still fill `header`)
    assert run([{"whole_doc": True, "header": "Resting the dough"}]) == ["headerless_doc"]
    assert run([{"whole_doc": True, "header": "", "headerless_ok": True}], reject_empty_header=True) == [None]


def test_filter_edges_the_grid_does_not_reach():
    assert run([{"header": "V2.1.0 (2024-05-01)"}, {"header": "v3.0 changes"}]) == ["version_header"] * 2
    assert run([{"text": "ab"}, {"text": "a"}], min_chars=1, max_chars=1) == ["too_long", None]
    passed = apply_filters(pl.DataFrame({"header": ["Resting the dough"], "text": [PROSE], "whole_doc": [False],
                                         "headerless_ok": [False], "n_chars": [len(PROSE)]}),
                           CorpusConfig(min_chars=100, max_chars=1000))
    assert passed["reason"].dtype == pl.String and passed["reason"].to_list() == [None]


def test_near_dedup_defaults_are_the_corpus_defaults():
    cfg, near = CorpusConfig(), NearDedup()
    assert (near.num_perm, near.k, near.seed) == (cfg.minhash_num_perm, cfg.shingle_size, cfg.seed)
    bands = MinHashLSH(threshold=cfg.minhash_threshold, num_perm=cfg.minhash_num_perm)
    assert (near.lsh.b, near.lsh.r) == (bands.b, bands.r)


def test_a_text_shorter_than_a_shingle_is_one_shingle_of_its_own_words():
    alone, _ = shingle_hashes(pl.Series(["a b"]), 3)
    beside, doc = shingle_hashes(pl.Series(["a b", "c d e"]), 3)
    assert alone.tolist() == [4216463971] and beside.tolist() == [4216463971, 1724421481] and doc.tolist() == [0, 1]


def test_letterless_text_and_one_letter_lines():
    # with the letter filter off, a text without letters has no repeated worded lines
    assert run([{"text": "1234 5678 " * 20}], min_alpha_share=0) == [None]
    from humpback.corpus.filters import link_line_share

    share = pl.DataFrame({"t": ["a\nhttp://x"]}).select(link_line_share(pl.col("t"))).item()
    assert share == 0.5  # a one-letter line is a line

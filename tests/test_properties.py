"""Property-based tests (hypothesis): the segmenters, the score and verdict parsers, the win-rate maths."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from humpback.corpus.segment import segment_html, segment_markdown, segment_plain, segment_rst
from humpback.curation.parse import parse_score
from humpback.evaluation.judge import parse_verdict
from humpback.evaluation.metrics import win_rate
from humpback.text import has_visible

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORD = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=8)
PROSE = st.lists(WORD, min_size=1, max_size=12).map(" ".join)
# lines from a markdown/rst-ish vocabulary, so headers, fences, underlines and lists really occur
MD_LINE = st.one_of(
    PROSE,
    st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 7), PROSE),
    st.sampled_from(["", "---", "===", "```", "~~~", "    code", "- item", "> quote", "***", "[a](http://x)",
                     "![b](img.png)", "<!-- c -->", ".. image:: x.png", "   :target: y", "|badge|", "#", "######"]),
    st.text(max_size=30),
)
DOC = st.lists(MD_LINE, max_size=30).map("\n".join)
_WS = re.compile(r"\s+")


def squash(text: str) -> str:
    return _WS.sub("", text)


@FAST
@given(DOC)
def test_markdown_never_crashes_and_keeps_headers_from_header_lines(doc):
    sections = segment_markdown(doc)
    lines = doc.splitlines()
    for header, level, text in sections:
        assert 0 <= level <= 6
        assert level > 0 or header == ""  # level 0: the text before any header (an empty `#` is level 1)
        if header:
            # the header's words come from one line of the input (an ATX line or a setext title)
            assert any(squash(header) in squash(line) for line in lines), header
        for line in text.splitlines():
            assert line.rstrip() == line  # tidied
            assert squash(line) in squash(doc)  # no invented text: every kept line is input text


@FAST
@given(st.lists(PROSE, min_size=1, max_size=8), st.lists(PROSE, min_size=1, max_size=8))
def test_markdown_loses_no_prose(headers, bodies):
    """Plain prose under ATX headers comes back whole, modulo whitespace, in order."""
    doc = "\n\n".join(f"## {h}\n\n{b}" for h, b in zip(headers, bodies, strict=False))
    sections = segment_markdown(doc)
    n = min(len(headers), len(bodies))
    assert [s.header for s in sections] == [_WS.sub(" ", h).strip() for h in headers[:n]]
    assert squash("".join(s.text for s in sections)) == squash("".join(bodies[:n]))


@FAST
@given(DOC)
def test_rst_never_crashes_and_text_comes_from_the_input(doc):
    for header, level, text in segment_rst(doc):
        assert 0 <= level <= 6
        if header:
            assert any(squash(header) in squash(line) for line in doc.splitlines())
        for line in text.splitlines():
            assert squash(line) in squash(doc)


TAG = st.sampled_from(["p", "div", "h1", "h2", "h3", "h6", "li", "ul", "span", "b", "pre", "nav", "script", "table",
                       "td", "br", "section", "a", "footer", "h7"])
HTML_SOUP = st.recursive(
    st.one_of(PROSE, st.sampled_from(["<", ">", "&amp;", "&", "<!--", "-->", "<br>", "\x00"])),
    lambda children: st.builds(lambda t, kids, close: f"<{t}>" + "".join(kids) + (f"</{t}>" if close else ""),
                               TAG, st.lists(children, max_size=4), st.booleans()),
    max_leaves=40,
)


@FAST
@given(HTML_SOUP)
def test_html_soup_never_crashes_and_invents_no_words(html):
    # every output word is made of input words: inline tags, dropped elements (script, nav) and the
    # NUL characters the parser removes may join neighbours, but no text is invented
    words_in = sorted(set(re.findall(r"\w+", html)), key=len, reverse=True)
    made_of_input = re.compile("(?:" + "|".join(map(re.escape, words_in or ["\x01"])) + ")+")
    for header, level, text in segment_html(html):
        assert 0 <= level <= 6 and (level > 0 or header == "")  # an empty <h1></h1> is a level-1 header ""
        for word in re.findall(r"\w+", header + " " + text):
            assert made_of_input.fullmatch(word) or word == "amp", word


@FAST
@given(st.lists(st.tuples(st.sampled_from(["h1", "h2", "h3"]), PROSE, PROSE), min_size=1, max_size=6))
def test_html_headers_and_paragraphs_survive(parts):
    html = "<body>" + "".join(f"<{t}>{h}</{t}><p>{b}</p>" for t, h, b in parts) + "</body>"
    sections = segment_html(html)
    assert [(s.header, s.level) for s in sections] == [(h.strip(), int(t[1])) for t, h, _ in parts]
    assert [squash(s.text) for s in sections] == [squash(b) for _, _, b in parts]


@FAST
@given(st.text())
def test_plain_text_is_one_section_or_none(text):
    sections = segment_plain(text)
    assert len(sections) == (1 if has_visible(text) else 0)  # whitespace or invisible characters only: none
    if sections:
        assert squash(sections[0].text) == squash(text)


# --------------------------------------------------------------------------- parse_score

JUNK_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)
REASONING = st.text(alphabet=st.characters(codec="ascii", categories=["L", "Zs"]), max_size=200)


@FAST
@given(JUNK_TEXT)
def test_parse_score_is_total_and_in_range(text):
    s = parse_score(text)
    assert s is None or (isinstance(s, float) and 1 <= s <= 5)


@FAST
@given(REASONING, st.integers(1, 5), st.sampled_from(["Score: {n}", "**Score:** {n}", "Score - {n}", "score: {n}/5",
                                                      "Rating: {n} out of 5", "Final score: {n}.", "Score:\n{n}"]))
def test_parse_score_reads_the_final_score_line(reasoning, n, form):
    assume(not re.search(r"\d", reasoning))
    assert parse_score(f"{reasoning}\n{form.format(n=n)}") == n


@FAST
@given(st.integers(1, 5), st.integers(1, 5), REASONING)
def test_parse_score_takes_the_last_rating(first, last, middle):
    assume(not re.search(r"\d", middle))
    assert parse_score(f"Score: {first}\n{middle}\nScore: {last}") == last


@FAST
@given(st.one_of(st.integers(-50, 0), st.integers(6, 10_000)))
def test_parse_score_out_of_range_is_none(n):
    assert parse_score(f"The answer is fine.\nScore: {n}") is None


# --------------------------------------------------------------------------- parse_verdict

LABELS = st.sampled_from([("1", "2"), ("A", "B"), ("m", "M")])


@FAST
@given(JUNK_TEXT, LABELS)
def test_parse_verdict_is_total(text, labels):
    v = parse_verdict(text, labels, "Better answer:")
    assert v in (None, 0, 1)


@FAST
@given(st.integers(0, 1), st.sampled_from(["{l}", "Better answer: {l}", "**{l}**", "({l})", "{l}.", "Answer {l} is better.",
                                           "Better answer: {l}\nBecause it is clearer."]))
def test_parse_verdict_reads_the_chosen_label(k, form):
    assert parse_verdict(form.format(l=("1", "2")[k]), ("1", "2"), "Better answer:") == k


@FAST
@given(REASONING)
def test_parse_verdict_naming_both_is_not_a_verdict(text):
    assume(text.strip() and not re.search(r"\d", text))  # (a reply that starts with a label chose it)
    assert parse_verdict(f"{text} 1 and 2 are both fine {text}", ("1", "2")) is None


# --------------------------------------------------------------------------- win rate

PREFS = st.lists(st.one_of(st.sampled_from([1.0, 1.5, 2.0]), st.floats(1.0, 2.0)), min_size=1, max_size=60)


@FAST
@given(PREFS)
def test_win_rate_bounds_and_counts(prefs):
    m = win_rate(prefs)
    for key in ("win_rate", "discrete_win_rate"):
        assert -1e-9 <= m[key] <= 100 + 1e-9
    assert m["n_wins"] + m["n_draws"] + m["n_losses"] == m["n_total"] == len(prefs)
    assert m["win_rate"] == pytest.approx(100 * (np.mean(prefs) - 1))


@settings(FAST, max_examples=40)  # each example fits two logistic regressions
@given(PREFS, st.data())
def test_swapping_model_and_reference_maps_w_to_100_minus_w(prefs, data):
    swapped = [3.0 - p for p in prefs]
    a, b = win_rate(prefs), win_rate(swapped)
    assert a["win_rate"] + b["win_rate"] == pytest.approx(100)
    assert a["discrete_win_rate"] + b["discrete_win_rate"] == pytest.approx(100)
    assert (a["n_wins"], a["n_draws"], a["n_losses"]) == (b["n_losses"], b["n_draws"], b["n_wins"])
    if a["standard_error"] is not None:
        assert a["standard_error"] == pytest.approx(b["standard_error"], abs=1e-9)
    lengths = data.draw(st.lists(st.integers(1, 3000), min_size=len(prefs), max_size=len(prefs)))
    refs = data.draw(st.lists(st.integers(1, 3000), min_size=len(prefs), max_size=len(prefs)))
    la = win_rate(prefs, lengths=lengths, ref_lengths=refs)["lc_win_rate"]
    lb = win_rate(swapped, lengths=refs, ref_lengths=lengths)["lc_win_rate"]
    assert 0 <= la <= 100 and la + lb == pytest.approx(100, abs=0.5)


@FAST
@given(st.integers(1, 40), st.integers(0, 40), st.integers(0, 40))
def test_discrete_and_soft_agree_on_hard_verdicts(wins, draws, losses):
    prefs = [2.0] * wins + [1.5] * draws + [1.0] * losses
    m = win_rate(prefs)
    assert m["win_rate"] == pytest.approx(m["discrete_win_rate"])
    assert (m["n_wins"], m["n_draws"], m["n_losses"]) == (wins, draws, losses)


@FAST
@given(st.integers(1, 50))
def test_all_ties_are_fifty(n):
    m = win_rate([1.5] * n, lengths=[10] * n, ref_lengths=[20] * n)
    assert m["win_rate"] == m["discrete_win_rate"] == 50 and m["lc_win_rate"] == pytest.approx(50)


@FAST
@given(PREFS)
def test_soft_and_discrete_round_the_same_way(prefs):
    """Soft preferences on the winning side of 1.5 count as wins: both rates sit on the same side of 50."""
    m = win_rate(prefs)
    assert (m["discrete_win_rate"] > 50) == (m["n_wins"] > m["n_losses"])
    if all(p >= 1.5 for p in prefs):
        assert m["win_rate"] >= 50 and m["discrete_win_rate"] >= 50
    if all(p <= 1.5 for p in prefs):
        assert m["win_rate"] <= 50 and m["discrete_win_rate"] <= 50

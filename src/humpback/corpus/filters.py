"""Quality filters on a batch of segments, as polars expressions: each rejected row gets one reason.

The filters run in the order of FILTER_ORDER; a segment's reason is the first filter it fails, so
the per-reason counts add up to the number of rejected segments.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from humpback.corpus.config import CorpusConfig

FILTER_ORDER = [
    "headerless_doc",  # a document without any header, from a source that needs headers
    "empty_header",  # the text before the first header, or a header without words
    "too_short",
    "too_long",
    "bad_header",  # navigation, promotion, license, installation ... headers
    "version_header",  # changelog entries
    "header_caps",  # SHOUTING HEADERS
    "low_alpha",  # too little alphabetic text (tables of numbers, code dumps, symbols)
    "link_lines",  # mostly links, URLs or badges
    "dup_lines",  # many repeated lines (menus, boilerplate)
]

# a line "is" a link when it holds a URL or link markup and almost no other words
_LINKY = r"https?://|www\.|\]\(|<a\s|<img\s|\|[^|\s][^|]*\|_?"
_LINK_STRIP = r"!?\[([^\]]*)\]\([^)]*\)|<[^>]+>|https?://\S+|www\.\S+|\|[^|\s][^|]*\|_?"


def bad_header_pattern(phrases: list[str]) -> str | None:
    words = [re.escape(p.strip().lower()).replace(r"\ ", r"\s+") for p in phrases if p.strip()]
    return rf"(?i)\b(?:{'|'.join(words)})\b" if words else None


def _lines(text: pl.Expr) -> pl.Expr:
    return text.str.split("\n").list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element().str.len_chars() > 0))


def dup_line_share(text: pl.Expr) -> pl.Expr:
    """Share of lines (among lines with letters) that repeat an earlier line of the same text."""
    worded = _lines(text).list.eval(pl.element().filter(pl.element().str.contains(r"\p{L}")))
    n_worded = worded.list.len()
    # repeats / lines, not 1 - unique / lines: 3 of 10 is exactly 0.3, at the limit, not above it
    return pl.when(n_worded > 0).then((n_worded - worded.list.n_unique()) / n_worded).otherwise(0.0)


def link_line_share(text: pl.Expr) -> pl.Expr:
    """Share of non-blank lines that are only links, URLs or badges."""
    lines = _lines(text)
    is_link = pl.element().str.contains(_LINKY) & (
        pl.element().str.replace_all(_LINK_STRIP, "").str.count_matches(r"\p{L}") < 4)
    n_lines = lines.list.len()
    return pl.when(n_lines > 0).then(lines.list.eval(is_link).list.sum() / n_lines).otherwise(0.0)


def reason_expr(cfg: CorpusConfig) -> pl.Expr:
    """The first failed filter of each row as a string, null when the row passes them all."""
    header, text, n = pl.col("header"), pl.col("text"), pl.col("n_chars")
    header_letters = header.str.count_matches(r"\p{L}")
    caps_share = header.str.count_matches(r"\p{Lu}") / pl.when(header_letters > 0).then(header_letters).otherwise(1)
    alpha_share = text.str.replace_all(r"\P{L}+", "").str.len_chars() / pl.when(n > 0).then(n).otherwise(1)

    checks: list[tuple[str, pl.Expr]] = [
        ("headerless_doc", pl.col("whole_doc") & ~pl.col("headerless_ok")),
    ]
    if cfg.reject_empty_header:
        checks.append(("empty_header", ~pl.col("whole_doc") & (header_letters == 0)))
    checks += [("too_short", n < cfg.min_chars)]
    if cfg.max_chars > 0:
        checks.append(("too_long", n > cfg.max_chars))
    pattern = bad_header_pattern(cfg.bad_headers)
    if pattern:
        checks.append(("bad_header", header.str.contains(pattern)))
    if cfg.reject_version_headers:
        checks.append(("version_header", header.str.contains(r"^\W*[vV]?\d+(?:\.\d+)+")))
    checks += [
        ("header_caps", (header_letters >= cfg.header_caps_min_letters) & (caps_share > cfg.max_header_caps)),
        ("low_alpha", alpha_share < cfg.min_alpha_share),
        ("link_lines", pl.col("_link_share") > cfg.max_link_line_share),
        ("dup_lines", dup_line_share(text) > cfg.max_dup_line_share),
    ]
    expr = pl.when(checks[0][1]).then(pl.lit(checks[0][0]))
    for name, cond in checks[1:]:
        expr = expr.when(cond).then(pl.lit(name))
    return expr.otherwise(pl.lit(None, dtype=pl.String)).alias("reason")


def apply_filters(frame: pl.DataFrame, cfg: CorpusConfig) -> pl.DataFrame:
    """Add `reason` (null = kept so far) to a batch of segments."""
    # the per-line link test is the costly one: run it only on texts that hold any link at all
    has_link = frame.select(pl.col("text").str.contains(_LINKY)).to_series()
    share = np.zeros(frame.height)
    if has_link.any():
        rows = has_link.arg_true().to_numpy()
        share[rows] = frame[rows].select(link_line_share(pl.col("text"))).to_series().to_numpy()
    return (frame.lazy().with_columns(pl.Series("_link_share", share)).with_columns(reason_expr(cfg))
            .drop("_link_share").collect())

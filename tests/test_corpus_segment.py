"""Segmentation of Markdown, reStructuredText and HTML into header sections."""

from __future__ import annotations

from humpback.corpus.segment import (
    canonical_url,
    clean_header,
    is_link_only,
    parse_html,
    segment_html,
    segment_markdown,
    segment_plain,
    segment_rst,
)

MARKDOWN = """\
[![PyPI](https://img.shields.io/pypi/v/x.svg)](https://pypi.org/project/x/) [![CI](https://ci/badge.svg)](https://ci)

Intro text before any header.

# Project *title* #

Some prose about the project.

## Usage

```python
# this is a comment, not a header
import x
```

More usage text.

Setext header
=============

Under the setext h1.

Second setext
-------------

Text with a [link](https://example.com) in a sentence.

---

[ref]: https://example.com/ref
After the rule.
"""


def test_markdown_headers_levels_and_fenced_code():
    sections = segment_markdown(MARKDOWN)
    assert [(s.header, s.level) for s in sections] == [
        ("", 0), ("Project title", 1), ("Usage", 2), ("Setext header", 1), ("Second setext", 2)]
    usage = sections[2].text
    assert "# this is a comment, not a header" in usage  # code stays as text, `#` inside it is no header
    assert usage.startswith("```python") and "More usage text." in usage
    assert sections[0].text == "Intro text before any header."  # the badge line is gone
    last = sections[4].text
    assert "[link](https://example.com)" in last and "After the rule." in last
    assert "---" not in last and "[ref]:" not in last  # a thematic break and a link definition are dropped


def test_markdown_tilde_fence_and_unclosed_fence():
    text = "# A\n~~~\n# not a header\n~~~\n# B\n```\n# still code\n"
    sections = segment_markdown(text)
    assert [s.header for s in sections] == ["A", "B"]
    assert "# still code" in sections[1].text


def test_markdown_without_headers_is_one_level0_section():
    assert segment_markdown("just text\n\nmore") == [("", 0, "just text\n\nmore")]
    assert segment_markdown("") == []


RST = """\
.. image:: https://img.shields.io/pypi/v/x.svg
   :target: https://pypi.org/project/x

=========
 My tool
=========

|build| |coverage|

The tool does things.

Install
-------

Use pip::

    pip install tool

Details
~~~~~~~

Fine print.

----------

Another part
------------

More text.
"""


def test_rst_titles_levels_in_order_of_appearance():
    sections = segment_rst(RST)
    assert [(s.header, s.level) for s in sections] == [
        ("My tool", 1), ("Install", 2), ("Details", 3), ("Another part", 2)]
    assert sections[0].text == "The tool does things."  # image directive, its option and the badges are gone
    assert "    pip install tool" in sections[1].text  # literal block kept
    assert sections[2].text == "Fine print."  # the transition line is dropped


HTML = """<!doctype html><html><head><title>T</title><link rel="canonical" href="https://ex.org/page">
<style>body{color:red}</style><script>var x = "# no";</script></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
<p>Lead paragraph.</p>
<article><h1>Main <em>title</em></h1>
<p>First paragraph with <a href="x">a link</a> inside.</p>
<ul><li>one</li><li>two</li></ul>
<h2>Code</h2><pre>def f():
    return 1</pre>
<div>Div text<br>after break</div>
<h3></h3><p>under empty header</p>
</article><footer>Copyright 2024</footer></body></html>"""


def test_html_sections_blocks_and_dropped_elements():
    tree = parse_html(HTML)
    assert canonical_url(tree) == "https://ex.org/page"
    sections = segment_html(tree)
    assert [(s.header, s.level) for s in sections] == [("", 0), ("Main title", 1), ("Code", 2), ("", 3)]
    assert sections[0].text == "Lead paragraph."  # nav, script and style are gone
    assert sections[1].text == "First paragraph with a link inside.\n- one\n- two"
    assert sections[2].text == "def f():\n    return 1\nDiv text\nafter break"
    assert sections[3].text == "under empty header"
    assert all("Copyright" not in s.text for s in sections)


def test_html_from_string_and_without_body_text():
    assert segment_html("<p>only text</p>") == [("", 0, "only text")]
    assert segment_html("<html><body></body></html>") == []


def test_link_only_lines_and_header_cleanup():
    assert is_link_only("[![x](https://b/x.svg)](https://x)")
    assert is_link_only("|PyPI| |Build Status|")
    assert is_link_only("<a href='x'><img src='y'></a>")
    assert is_link_only("- [Docs](https://docs)")
    assert not is_link_only("See the [docs](https://docs) for the whole configuration reference.")
    assert not is_link_only("Plain prose line.")
    assert clean_header("`Installation <https://x>`_") == "Installation"
    assert clean_header("[Usage](#usage) ![img](a.png)") == "Usage"
    assert clean_header("**Bold** header ##") == "Bold header"
    assert clean_header("snake_case_name and *stress*") == "snake_case_name and stress"


def test_plain_text_is_one_section():
    assert segment_plain("\n\nline one\n\n\n\nline two\n") == [("", 0, "line one\n\nline two")]
    assert segment_plain("   ") == []

"""A synthetic web-text dump for benchmarks and tests: Markdown documents in a FineWeb-style JSONL.

Each document is a title plus `## header` sections of generated prose (with lists and code now and
then), mixed with the junk the filters exist for: navigation and newsletter sections, shouting
headers, link lists, repeated menu lines, stubs that are too short, exact copies and lightly edited
near copies of earlier sections. Deterministic for a given seed.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from pathlib import Path
from typing import Literal

import numpy as np

from humpback.io import atomic_path

_VOCABULARY = """
the of and to in is was for on that with as by at from it his an were are which this be or has had
not have but their its they first one new after also been other two who when more all there time can
into during most only some would about over between such made many where these used under while may
three both through however well year years city water river system energy light data model method
garden plant soil season winter summer bread flour oven dough recipe salt sugar butter temperature
minutes hours process step example result value number function file line code program user server
network request response library package version project build test module class object method string
history church village school student teacher market price company product design material surface
animal species forest island mountain road bridge station train engine power battery signal sound
music film story character author book chapter page letter language word sentence meaning question
answer problem solution reason effect cause change growth level rate size length weight pressure
health body muscle sleep food diet exercise doctor patient treatment study research evidence theory
paint wall floor room window door roof wood metal glass paper stone color shape pattern line edge
careful simple important common different large small long short early late high low strong quick
"""

_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
_JUNK_HEADERS = ["Quick Links", "Newsletter", "Subscribe to our newsletter", "Advertisement", "Table of Contents",
                 "Follow Us", "Related Posts", "Cookie Policy", "Share This", "Contact Us"]


class _Gen:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.words = np.array(_VOCABULARY.split())
        self._buffer: list[str] = []
        self._at = 0

    def _take(self, n: int) -> list[str]:
        # random words drawn in bulk: one numpy call per 100k words, not one per sentence
        if self._at + n > len(self._buffer):
            self._buffer, self._at = self.words[self.rng.integers(0, len(self.words), 100_000)].tolist(), 0
        self._at += n
        return self._buffer[self._at - n:self._at]

    def sentence(self) -> str:
        n = int(self.rng.integers(8, 22))
        return (" ".join(self._take(n)) + ".").capitalize()

    def paragraph(self, n_chars: int) -> str:
        out, size = [], 0
        while size < n_chars:
            s = self.sentence()
            out.append(s)
            size += len(s) + 1
        return " ".join(out)

    def header(self) -> str:
        return " ".join(self._take(int(self.rng.integers(2, 6)))).capitalize()

    def body(self) -> str:
        target = int(self.rng.integers(450, 2600))
        parts, size = [], 0
        while size < target:
            kind = self.rng.random()
            if kind < 0.12:
                block = "\n".join(f"- {self.sentence()}" for _ in range(int(self.rng.integers(3, 6))))
            elif kind < 0.18:
                name = self.words[self.rng.integers(0, len(self.words))]
                block = f"```python\n# {self.header()}\ndef {name}(x):\n    return x + {int(self.rng.integers(1, 99))}\n```"
            else:
                block = self.paragraph(int(self.rng.integers(200, 700)))
            parts.append(block)
            size += len(block) + 2
        return "\n\n".join(parts)

    def junk(self) -> tuple[str, str]:
        kind = int(self.rng.integers(0, 5))
        if kind == 0:  # a navigation / promo header over ordinary-looking text
            return str(self.rng.choice(_JUNK_HEADERS)), self.paragraph(int(self.rng.integers(450, 900)))
        if kind == 1:  # SHOUTING header
            return self.header().upper(), self.paragraph(int(self.rng.integers(450, 900)))
        if kind == 2:  # a link list
            links = [f"[{self.header()}](https://example.com/{i})" for i in range(int(self.rng.integers(12, 30)))]
            return self.header(), "\n".join(links)
        if kind == 3:  # repeated menu lines
            menu = [self.header() for _ in range(4)]
            return self.header(), "\n".join(menu * int(self.rng.integers(5, 10)))
        return self.header(), self.sentence()  # a stub


def _md_to_html(title: str, sections: list[tuple[str, str]], url: str) -> str:
    """Render the generator's small Markdown subset as a web page with navigation and a footer."""
    out = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
           f"<link rel=\"canonical\" href=\"{url}\"><script>window.dataLayer = [];</script></head><body>",
           "<nav><ul><li><a href=\"/\">Home</a></li><li><a href=\"/blog\">Blog</a></li></ul></nav>",
           f"<main><h1>{html.escape(title)}</h1>"]
    for header, body in sections:
        out.append(f"<h2>{html.escape(header)}</h2>")
        for block in body.split("\n\n"):
            if block.startswith("```"):
                code = "\n".join(block.split("\n")[1:-1])
                out.append(f"<pre><code>{html.escape(code)}</code></pre>")
            elif block.startswith("- "):
                items = "".join(f"<li>{html.escape(line[2:])}</li>" for line in block.split("\n"))
                out.append(f"<ul>{items}</ul>")
            else:
                for line in block.split("\n"):
                    m = _MD_LINK.fullmatch(line)
                    text = f"<a href=\"{m.group(2)}\">{html.escape(m.group(1))}</a>" if m else html.escape(line)
                    out.append(f"<p>{text}</p>")
    out.append("</main><footer><p>Copyright 2024 Example Org</p></footer></body></html>")
    return "\n".join(out)


def make_corpus(path: str | Path, n_docs: int, *, sections_per_doc: int = 5, seed: int = 0,
                junk_share: float = 0.15, exact_dup_share: float = 0.05, near_dup_share: float = 0.05,
                fmt: Literal["jsonl", "html"] = "jsonl") -> dict:
    """Write `n_docs` documents to `path`; return counts of what was written.

    jsonl: one file of {id, url, text} records with Markdown text (a `table` source).
    html: a directory of pages, 1,000 per sub-directory (an `html` source).
    Each document has a title and `sections_per_doc` sections on average (1 to twice that).
    """
    gen = _Gen(seed)
    rng = gen.rng
    pool: list[tuple[str, str]] = []  # earlier good sections, for copies
    counts = {"docs": n_docs, "sections": 0, "junk": 0, "exact_copies": 0, "near_copies": 0}
    path = Path(path)
    with contextlib.ExitStack() as stack:
        if fmt == "jsonl":
            tmp = stack.enter_context(atomic_path(path))
            f = stack.enter_context(open(tmp, "w", encoding="utf-8"))
        for d in range(n_docs):
            n_sec = int(rng.integers(1, 2 * sections_per_doc))
            title, sections = gen.header(), []
            for _ in range(n_sec):
                r = rng.random()
                if r < junk_share:
                    header, body = gen.junk()
                    counts["junk"] += 1
                elif r < junk_share + exact_dup_share and pool:
                    header, body = pool[int(rng.integers(0, len(pool)))]
                    counts["exact_copies"] += 1
                elif r < junk_share + exact_dup_share + near_dup_share and pool:
                    header, body = pool[int(rng.integers(0, len(pool)))]
                    words = body.split(" ")
                    i = int(rng.integers(0, len(words)))
                    words[i] = str(gen.words[rng.integers(0, len(gen.words))])  # one word swapped
                    body = " ".join(words)
                    counts["near_copies"] += 1
                else:
                    header, body = gen.header(), gen.body()
                    if len(pool) < 5000:
                        pool.append((header, body))
                    elif rng.random() < 0.1:
                        pool[int(rng.integers(0, len(pool)))] = (header, body)
                sections.append((header, body))
                counts["sections"] += 1
            doc_id, url = f"doc-{d:07d}", f"https://example.org/{d}"
            if fmt == "jsonl":
                text = "\n\n".join([f"# {title}"] + [f"## {h}\n\n{b}" for h, b in sections])
                f.write(json.dumps({"id": doc_id, "url": url, "text": text}) + "\n")
            else:
                page = path / f"{d // 1000:04d}" / f"{doc_id}.html"
                page.parent.mkdir(parents=True, exist_ok=True)
                page.write_text(_md_to_html(title, sections, url), encoding="utf-8")
    return counts

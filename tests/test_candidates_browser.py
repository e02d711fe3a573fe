"""The candidate browser in a real headless Chromium, loaded from file:// as a reader opens it: rows
render, the filters narrow them, a header click sorts, an excerpt expands, and hostile web text
shows as text. Skips where no Chromium is installed (Debian: apt-get install chromium).

HUMPBACK_SCREENSHOT_DIR=<dir> also saves the screenshot of the page (built from
tests/candidates_data.realistic) there as candidates.png.
"""

import os
import shutil
from pathlib import Path

import pytest
from candidates_data import HOSTILE, realistic
from headless_chromium import Browser, chromium_or_skip

from humpback.evaluation.candidates_page import build_candidates_page


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    binary = chromium_or_skip()
    root = tmp_path_factory.mktemp("browser")
    data = build_candidates_page(["it1", "it2"], realistic(root), root / "candidates.html")
    with Browser(binary) as b:
        yield b, root / "candidates.html", data


ROWS = "document.querySelectorAll('#rows tr')"


def _ids(b) -> list[str]:
    return b.eval(f"[...{ROWS}].map((tr) => tr.dataset.id)")


def _choose(b, select_id: str, value: str) -> None:
    """A <select> opens a native popup a headless page cannot click through: set it as choosing does."""
    b.eval(f"{{ const s = document.getElementById('{select_id}'); s.value = '{value}'; "
           "s.dispatchEvent(new Event('input')); }")


def _reset(b, path):
    b.open(path.as_uri())
    assert b.errors == []


def test_rows_render_and_hostile_text_is_text(page):
    b, path, data = page
    _reset(b, path)
    n = len(data["rows"])
    assert n > 100 and b.eval(f"{ROWS}.length") == 100  # the first of the pages
    assert b.eval("document.getElementById('count').textContent") == f"{n} of {n} rows match"
    assert _ids(b)[:3] == [r["id"] for r in data["rows"][:3]]
    # the hostile segment and instruction: shown verbatim, no element made of them, no script run
    assert b.eval("document.title") == "humpback candidates"
    assert b.eval("document.querySelectorAll('img, b, #rows script').length") == 0
    shown = b.eval("[...document.querySelectorAll('#rows td')].map((td) => td.textContent).join('\\n')")
    assert HOSTILE[:-2] in shown
    assert b.errors == []


def test_search_and_filters_narrow_the_rows(page):
    b, path, data = page
    _reset(b, path)
    b.type("#q", "thank")
    ids = _ids(b)
    expected = [r["id"] for r in data["rows"] if "thank" in (r["ins"] + r["seg"] + r["id"]).lower()]
    assert 0 < len(ids) < 100 and ids == expected
    _reset(b, path)
    _choose(b, "iteration", "1")
    _choose(b, "status", "kept")
    kept2 = [r["id"] for r in data["rows"] if r["it"][1] and r["it"][1][1]]
    assert _ids(b) == kept2[:100] and 0 < len(kept2) < len(data["rows"])
    b.type("#smin", "3.6")
    high = [r["id"] for r in data["rows"] if r["it"][1] and r["it"][1][1] and r["it"][1][0] >= 3.6]
    assert _ids(b) == high and 0 < len(high) < len(kept2)
    _reset(b, path)
    _choose(b, "reason", "augment: echo")
    assert _ids(b) == [r["id"] for r in data["rows"] if r["aug"] and r["aug"][0] == "echo"]


def test_header_click_sorts_and_excerpt_expands(page):
    b, path, data = page
    _reset(b, path)
    b.click("th[data-key=score0]")
    scores = b.eval(f"[...{ROWS}].map((tr) => tr.querySelector('td.score').textContent)")
    values = [float(s) for s in scores if s]
    lowest = min(r["it"][0][0] for r in data["rows"] if r["it"][0] and r["it"][0][0] is not None)
    assert values == sorted(values) and values[0] == round(lowest, 2)
    b.click("th[data-key=score0]")
    values = [float(s) for s in b.eval(f"[...{ROWS}].map((tr) => tr.querySelector('td.score').textContent)") if s]
    assert values == sorted(values, reverse=True) and len(values) == 100
    assert b.eval("document.querySelector('th[data-key=score0]').getAttribute('aria-sort')") == "descending"
    first = next(r for r in data["rows"] if r["id"] == _ids(b)[0])
    assert not b.eval("document.querySelector('#rows details').open")
    b.click("#rows summary")
    assert b.eval("document.querySelector('#rows details').open")
    assert b.eval("document.querySelector('#rows details pre').textContent") == first["seg"]
    b.click("#next")
    assert b.eval("document.getElementById('pageinfo').textContent").startswith("page 2 of ")
    assert b.errors == []


def test_screenshot(page):
    b, path, _ = page
    _reset(b, path)
    b.click("#rows summary")
    b.eval("window.scrollTo(0, 0)")
    shot = path.with_suffix(".png")
    b.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if os.environ.get("HUMPBACK_SCREENSHOT_DIR"):
        shutil.copyfile(shot, Path(os.environ["HUMPBACK_SCREENSHOT_DIR"]) / "candidates.png")

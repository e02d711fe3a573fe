"""Read the 1-5 rating out of a judge's free text (self-curation in `generate` mode).

Published re-implementations matched one exact spelling and lost half of the ratings. Real models
write "**Score:** 5", "Score - 4", "Rating: 4 out of 5", "I would give this a 3." and restate the
rubric before answering, so this parser:

* finds every *explicit* rating: a label (score / rating / grade) followed by a number, a verb
  phrase ("give it a 4", "rate this response as 5"), or a bare "4/5" / "4 out of 5";
* takes the LAST one, since the prompt asks for the rating on the last line and reasoning often
  quotes the scale first;
* returns it as a float in [1, 5], decimals included: the paper's iteration-2 "A_5" keeps pairs
  scored >= 4.5, so "Score: 4.5" and "4.5/5" mean 4.5 (and "3.75" means 3.75), not a failure;
* returns None when that last rating is outside 1-5 or not one number: "Score: 7", "Score: 0",
  "Score: 8/10" (another scale), "Score: 3-4" and "4 or 5" (ranges). An out-of-range last rating
  never falls back to an earlier one: the judge's final word is wrong, so the row counts as a
  parse failure.

Number words ("Score: four") count.
"""

from __future__ import annotations

import re

_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
# A number, possibly signed or decimal, or a number word; then an optional "/ d" or "out of d".
_NUM = r"(?P<num>[+-]?\d+(?:\.\d+)?|" + "|".join(_WORDS) + r")"
_DENOM = r"(?:\s*(?:/|out\s+of)\s*(?P<den>\d+))?"
# A range such as "3-4", "4 or 5" or "4.25 to 4.5" is explicit but ambiguous: recognised so that it
# yields None (its second number is read whole, or the regex would drop the range and keep the first).
_RANGE = r"(?P<range>\s*(?:-|–|to|or)\s*\d+(?:\.\d+)?)?"
# The number must end there: not "45", not "4.5" half-read, not "score 1: means ..." (rubric restated).
_END = r"(?![\d.]\d)(?!\w)(?!\s*(?:means|indicates|would\s+mean|=)\b)(?!:\s*[A-Za-z])"

_LABEL = re.compile(
    r"\b(?:final\s+|overall\s+)?(?:score|rating|grade)\b"
    # separators between the label and the number: punctuation, markdown, a newline, "is", "of"
    r"(?:[\s:*#=_()\[\]\-–—]|\bis\b|\bof\b|\bwould\s+be\b|\bshould\s+be\b|\bwill\s+be\b){0,12}?"
    + _NUM + _DENOM + _RANGE + _END,
    re.IGNORECASE,
)
_PHRASE = re.compile(
    r"\b(?:give|giving|gave|rate|rating|rated|assign|assigning|award)\s+"
    r"(?:(?:it|this|that|(?:this|that|the)\s+(?:candidate\s+)?(?:answer|response|pair))\s+)?"
    r"(?:(?:a|an|as|with)\s+)?(?:(?:score|rating|grade)\s+(?:of\s+)?)?[*\s]*"
    + _NUM + _DENOM + _RANGE + _END,
    re.IGNORECASE,
)
_FRACTION = re.compile(r"(?<![\w.])(?P<num>\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(?P<den>5)\b(?!\.\d)(?P<range>)", re.IGNORECASE)


def _value(m: re.Match) -> float | None:
    if m.group("range"):
        return None
    raw = m.group("num").lower()
    value = float(_WORDS[raw]) if raw in _WORDS else float(raw)
    den = m.group("den")
    if den is not None and int(den) != 5:
        return None
    if not 1 <= value <= 5:
        return None
    return value


def parse_score(text: str | None) -> float | None:
    """The last explicit rating in `text` if it lies in [1, 5] (decimals allowed), else None."""
    if not text:
        return None
    last: tuple[int, float | None] | None = None  # (end position, value)
    for pattern in (_LABEL, _PHRASE, _FRACTION):
        for m in pattern.finditer(text):
            if last is None or m.end() > last[0]:
                last = (m.end(), _value(m))
    return None if last is None else last[1]

"""What counts as text: a string is empty unless it holds a visible character.

A visible character is a letter, digit, punctuation mark, symbol or spacing mark (Unicode categories
L*, N*, P*, S*, Mc) that is not one of the blank fillers below. Spaces, controls, format characters
(zero-width space and joiners U+200B-U+200D, word joiner U+2060, BOM U+FEFF, bidi embeddings and
isolates U+202A-U+202E and U+2066-U+2069, soft hyphen U+00AD, tag characters), combining marks on
nothing (variation selectors are Mn), private-use, surrogate and unassigned code points are not:
text made only of them renders as nothing and is empty wherever emptiness is checked (seed pairs,
corpus segments, eval prompts, generated instructions): `has_visible` is that rule.
"""

from __future__ import annotations

import unicodedata

# Letters and symbols by category that every font renders blank (Unicode Default_Ignorable or
# Braille blank): Hangul fillers, the halfwidth Hangul filler, the blank Braille pattern.
BLANK_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_visible(ch: str) -> bool:
    """True for one character that renders as a mark (see the module docstring)."""
    if ch in BLANK_FILLERS:
        return False
    cat = unicodedata.category(ch)
    return cat[0] in "LNPS" or cat == "Mc"


def has_visible(text: str) -> bool:
    """True when `text` holds at least one visible character; whitespace and invisible-only text is empty."""
    for ch in text:
        if ch.isascii():
            if "!" <= ch <= "~":  # printable ASCII other than the space: the common case, decided at once
                return True
            continue
        if is_visible(ch):
            return True
    return False

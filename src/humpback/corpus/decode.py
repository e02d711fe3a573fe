"""Bytes of a web page -> text, honouring the declared charset.

Order: a byte-order mark, the HTTP Content-Type charset, then `<meta charset>` (or the http-equiv
form) in the first 4 KiB. Labels are mapped the way browsers map them (latin-1 and ascii mean
windows-1252). A page that does not decode with its declared charset is tried as UTF-8 (a common
mislabel); a page that still does not decode is rejected, never guessed at.
"""

from __future__ import annotations

import codecs
import re

_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.()-]+)""", re.I)
_HTTP = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9_:.()-]+)", re.I)
# WHATWG encoding labels that differ from Python's codec of the same name
_BROWSER_ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "l1": "cp1252",
    "us-ascii": "cp1252", "ascii": "cp1252", "x-user-defined": "cp1252",
    "iso-8859-9": "cp1254", "latin5": "cp1254", "tis-620": "cp874", "gb2312": "gb18030", "gbk": "gb18030",
    "x-sjis": "shift_jis", "unicode": "utf-16le",
}
_BOMS = [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]


class UndecodableError(ValueError):
    """The page is not text in its declared charset nor in UTF-8."""


def charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = _HTTP.search(content_type)
    return m.group(1) if m else None


def charset_from_meta(data: bytes) -> str | None:
    m = _META.search(data[:4096])
    return m.group(1).decode("ascii", "replace") if m else None


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    label = _BROWSER_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(data: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Return (text, codec used); raise UndecodableError with a one-line reason."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(name), name
            except UnicodeDecodeError as e:
                raise UndecodableError(f"not valid {name} after its byte-order mark ({e.reason} at byte {e.start})") from None
    declared = charset_from_content_type(content_type) or charset_from_meta(data)
    codec = _codec(declared)
    tried = []
    for name in dict.fromkeys([c for c in (codec, "utf-8") if c]):
        try:
            return data.decode(name), name
        except UnicodeDecodeError as e:
            tried.append(f"{name} ({e.reason} at byte {e.start})")
    unknown = f"unknown charset {declared!r}; " if declared and codec is None else ""
    raise UndecodableError(f"{unknown}does not decode as {', '.join(tried)}")

"""Bytes of a web page -> text, honouring the declared charset.

Order: a byte-order mark, the HTTP Content-Type charset, then `<meta charset>` (or the http-equiv
form) in the first 4 KiB, then an XML declaration's encoding. Labels are mapped the way browsers
map them (latin-1 and ascii mean windows-1252). A label that names no text encoding is treated as
no label: unknown names, Python's bytes-to-bytes and str-to-str codecs (base64, zlib, bz2, hex,
uu, quopri, rot13) and its pseudo-encodings (unicode_escape, idna, punycode, undefined). A page
that does not decode with its declared charset is tried as UTF-8 (a common mislabel); a page that
still does not decode is rejected with a one-line reason naming the charset, never guessed at.
Whatever a codec raises, or a decoding that leaves a lone surrogate (not writable as UTF-8), is
that page's fault, never the run's.
"""

from __future__ import annotations

import codecs
import re

_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.()-]+)""", re.I)
_HTTP = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9_:.()-]+)", re.I)
_XML = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']\s*([A-Za-z0-9_:.()-]+)""", re.I)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Python codecs that decode bytes to text but are no web page's charset: they interpret escapes,
# raise on ordinary bytes, or always fail
_NOT_WEB = {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"}
_WIDE = ("utf_16", "utf_32")  # named inside ASCII-readable bytes, these labels cannot be true (WHATWG: UTF-8)
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


def charset_from_xml(data: bytes) -> str | None:
    m = _XML.search(data[:1024])
    return m.group(1).decode("ascii", "replace") if m else None


def _codec(label: str | None, in_page: bool = False) -> tuple[str | None, str]:
    """(the Python codec of a charset label, "") or (None, why the label names no text encoding).
    `in_page`: the label was read from the page's own bytes (meta, XML declaration)."""
    if not label:
        return None, ""
    shown = repr(label[:40] + ("..." if len(label) > 40 else ""))
    key = label.strip().lower()
    key = _BROWSER_ALIASES.get(key, key)
    try:
        name = codecs.lookup(key).name
    except Exception:  # LookupError; any other fault of an odd name is the same answer
        return None, f"unknown charset {shown}"
    try:
        b"x".decode(name)  # bytes-to-bytes and str-to-str codecs raise LookupError (b"" would not ask)
    except LookupError:
        return None, f"charset {shown} is not a text encoding"
    except Exception:  # a text codec that does not like one byte (utf-16): decided on the page itself
        pass
    norm = name.replace("-", "_")
    if norm in _NOT_WEB:
        return None, f"charset {shown} is not a web page encoding"
    if in_page and norm.startswith(_WIDE):
        return "utf-8", ""
    return name, ""


def decode_html(data: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Return (text, codec used); raise UndecodableError with a one-line reason."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(name), name
            except UnicodeDecodeError as e:
                raise UndecodableError(f"not valid {name} after its byte-order mark ({e.reason} at byte {e.start})") from None
    declared = charset_from_content_type(content_type)
    in_page = declared is None
    if in_page:
        declared = charset_from_meta(data) or charset_from_xml(data)
    codec, why = _codec(declared, in_page)
    tried = []
    for name in dict.fromkeys([c for c in (codec, "utf-8") if c]):
        try:
            text = data.decode(name)
        except UnicodeDecodeError as e:
            tried.append(f"{name} ({e.reason} at byte {e.start})")
            continue
        except Exception as e:  # a codec may raise anything on bytes it does not expect
            tried.append(f"{name} ({type(e).__name__}: {' '.join(str(e).split())[:80]})")
            continue
        if name != "utf-8" and (m := _SURROGATE.search(text)):
            tried.append(f"{name} (a lone surrogate at character {m.start()})")
            continue
        return text, name
    raise UndecodableError(f"{why + '; ' if why else ''}does not decode as {', '.join(tried)}")

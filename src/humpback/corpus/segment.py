"""Cut a document into segments: the text under one header, with the header and its level.

Markdown (ATX `#` and setext headers, `#` inside fenced code ignored), reStructuredText (over- and
underlined section titles, levels in order of first appearance) and HTML (h1-h6, the text of the
block elements up to the next header, navigation and scripts dropped). Text before the first header
is a section with an empty header and level 0; a document without any header is one such section.
Badge and link-only lines are removed lightly; code blocks stay as text. Text without a visible
character (whitespace, zero-width and bidi characters: `humpback.text.has_visible`) is empty: it
makes no section and no line.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from selectolax.lexbor import LexborHTMLParser, LexborNode

from humpback.text import has_visible


class Section(NamedTuple):
    header: str
    level: int  # 1-6; 0 for the text before the first header
    text: str


# ---------------------------------------------------------------- shared line cleanup

_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_REF_LINK = re.compile(r"\[([^\]]*)\]\[[^\]]*\]")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_HTML_COMMENT = re.compile(r"^\s*<!--.*-->\s*$")
_URL = re.compile(r"<?https?://\S+>?")
_RST_SUBST = re.compile(r"\|[^|\s][^|]*\|_{0,2}")
_RST_ROLE = re.compile(r":[\w-]+:`([^`]*)`")
_RST_LINK = re.compile(r"`([^`<]*?)\s*(?:<[^>]*>)?`_{1,2}")
_LINK_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+")  # markdown [label]: url
_RST_TARGET = re.compile(r"^\.\. _[^:]*:\s*\S*")  # .. _label: url
_RST_MEDIA = re.compile(r"^\.\. (?:\|[^|]+\|\s+)?(?:image|figure|raw|contents|sectnum|toctree)::", re.I)
_EMPHASIS = re.compile(r"(?<!\w)(?:\*{1,2}|_{1,2})([^*_]+?)(?:\*{1,2}|_{1,2})(?!\w)")
_LETTER = re.compile(r"[^\W\d_]")
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n{3,}")


def is_link_only(line: str) -> bool:
    """A line whose only content is images, links, URLs, badges or tags (a README banner)."""
    if not line.strip():
        return False
    rest = _MD_IMAGE.sub(" ", line)
    rest = _MD_LINK.sub(" ", rest)
    rest = _HTML_TAG.sub(" ", rest)
    rest = _URL.sub(" ", rest)
    rest = _RST_SUBST.sub(" ", rest)
    if rest == line:
        return False
    return len(_LETTER.findall(rest)) < 3


def clean_lines(lines: list[str], rst: bool = False) -> str:
    """Drop banner lines, link definitions, HTML comments and (reST) media directives; tidy blanks."""
    out: list[str] = []
    skip_indented = False
    for line in lines:
        if skip_indented:  # the option lines of a dropped directive (`:target: ...`)
            if line.strip() == "" or line[:1] in " \t":
                if line.strip():
                    continue
                skip_indented = False
            else:
                skip_indented = False
        # fast path: most prose lines carry no markup a banner or a definition would need
        if ("](" in line or "http" in line or "<" in line or "|" in line or "[" in line or ".. " in line):
            if rst and (_RST_MEDIA.match(line) or _RST_TARGET.match(line)):
                skip_indented = True
                continue
            if _HTML_COMMENT.match(line) or _LINK_REF_DEF.match(line) or is_link_only(line):
                continue
        out.append(line.rstrip())
    text = _BLANKS.sub("\n\n", "\n".join(out)).strip("\n")
    return text if has_visible(text) else ""


def clean_header(text: str) -> str:
    """Header text without markup: links keep their label, images and badges go."""
    if not any(c in text for c in "[]<>|`*_:"):
        return _SPACES.sub(" ", text).strip(" \t#=-")
    text = _MD_IMAGE.sub("", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_REF_LINK.sub(r"\1", text)
    text = _RST_ROLE.sub(r"\1", text)
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_SUBST.sub("", text)
    text = _HTML_TAG.sub("", text)
    text = _EMPHASIS.sub(r"\1", text).replace("`", "")
    return _SPACES.sub(" ", text).strip(" \t*_#=-:")


# ---------------------------------------------------------------- Markdown

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_OR_QUOTE = re.compile(r"^\s*(?:[-*+>]|\d+[.)])\s")


def segment_markdown(text: str) -> list[Section]:
    sections: list[Section] = []
    header, level, body = "", 0, []
    fence = ""  # the opening fence while inside a code block
    prev_blank = True

    def close() -> None:
        cleaned = clean_lines(body)
        if has_visible(header) or cleaned:
            sections.append(Section(header, level, cleaned))

    for line in text.splitlines():
        if fence:
            body.append(line)
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                fence = ""
            prev_blank = False
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)
            body.append(line)
            prev_blank = False
            continue
        m = _ATX.match(line)
        if m:
            close()
            header, level, body = clean_header(m.group(2) or ""), len(m.group(1)), []
            prev_blank = True
            continue
        m = _SETEXT.match(line)
        if m:
            title = body[-1] if body else ""
            # a setext underline needs a one-line paragraph right above it; otherwise `---` is a rule
            if title.strip() and (len(body) < 2 or not body[-2].strip()) and not _LIST_OR_QUOTE.match(title) \
                    and not title.startswith(("    ", "\t")):
                body.pop()
                close()
                header, level, body = clean_header(title), 1 if m.group(1)[0] == "=" else 2, []
                prev_blank = True
                continue
            if prev_blank:
                continue  # thematic break
        body.append(line)
        prev_blank = not line.strip()
    close()
    return sections


# ---------------------------------------------------------------- reStructuredText

_ADORN = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")


def segment_rst(text: str) -> list[Section]:
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = levels
    sections: list[Section] = []
    header, level, body = "", 0, []

    def close() -> None:
        cleaned = clean_lines(body, rst=True)
        if has_visible(header) or cleaned:
            sections.append(Section(header, level, cleaned))

    def level_of(style: tuple[str, bool]) -> int:
        if style not in styles:
            styles.append(style)
        return min(styles.index(style) + 1, 6)

    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        over = _ADORN.match(line)
        # overline + title + underline
        if over and i + 2 < n and lines[i + 1].strip() and _ADORN.match(lines[i + 2]) \
                and lines[i + 2].strip()[0] == over.group(1) and (i == 0 or not lines[i - 1].strip()):
            close()
            header, level, body = clean_header(lines[i + 1]), level_of((over.group(1), True)), []
            i += 3
            continue
        # title + underline (the title is not indented and follows a blank line)
        if i + 1 < n and line.strip() and not line[:1].isspace() and not over and (i == 0 or not lines[i - 1].strip()):
            under = _ADORN.match(lines[i + 1])
            if under and len(lines[i + 1].rstrip()) >= min(len(line.rstrip()), 4) \
                    and (i + 2 >= n or not lines[i + 2].strip() or not _ADORN.match(lines[i + 2])):
                close()
                header, level, body = clean_header(line), level_of((under.group(1), False)), []
                i += 2
                continue
        if over and (i == 0 or not lines[i - 1].strip()):
            i += 1  # a transition line
            continue
        body.append(line)
        i += 1
    close()
    return sections


# ---------------------------------------------------------------- HTML

_DROP = ["script", "style", "noscript", "nav", "footer", "aside", "form", "iframe", "svg", "template",
         "button", "select", "menu", "dialog", "object", "embed", "canvas"]
_HEADERS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {"p", "div", "li", "ul", "ol", "dl", "dt", "dd", "blockquote", "table", "tr", "td", "th", "thead",
           "tbody", "tfoot", "caption", "section", "article", "main", "header", "figure", "figcaption",
           "address", "details", "summary", "hr", "br", "center", "fieldset", "body"}
_WS = re.compile(r"\s+")


def parse_html(html: str) -> LexborHTMLParser:
    tree = LexborHTMLParser(html)
    for tag in _DROP:
        for node in tree.css(tag):
            node.decompose()
    return tree


def canonical_url(tree: LexborHTMLParser) -> str:
    node = tree.css_first('link[rel="canonical"]') or tree.css_first('meta[property="og:url"]')
    if node is None:
        return ""
    return (node.attributes.get("href") or node.attributes.get("content") or "").strip()


def segment_html(tree: LexborHTMLParser | str) -> list[Section]:
    if isinstance(tree, str):
        tree = parse_html(tree)
    root = tree.body or tree.root
    sections: list[Section] = []
    header, level = "", 0
    blocks: list[str] = []  # finished lines of the current section
    line: list[str] = []  # inline text of the current block

    def flush_line() -> None:
        if line:
            text = _WS.sub(" ", "".join(line)).strip()
            if has_visible(text):
                blocks.append(text)
            line.clear()

    def close() -> None:
        flush_line()
        text = clean_lines(blocks)
        if has_visible(header) or text:
            sections.append(Section(header, level, text))
        blocks.clear()

    if root is None:
        return sections
    # iterative walk: a None on the stack marks the end of a block element
    stack: list[LexborNode | None] = [root]
    while stack:
        node = stack.pop()
        if node is None:
            flush_line()
            continue
        tag = node.tag
        if tag == "-text":
            line.append(node.text_content or "")
            continue
        if tag in _HEADERS:
            close()
            header, level = _WS.sub(" ", node.text(separator=" ")).strip(), _HEADERS[tag]
            continue
        if tag == "pre":
            flush_line()
            code = (node.text(deep=True) or "").strip("\n")
            if has_visible(code):
                blocks.append(code)
            continue
        if tag in ("img", "-comment", "head", "title"):
            continue
        block = tag in _BLOCKS
        if block:
            flush_line()
            stack.append(None)
            if tag == "li":
                line.append("- ")
        children = list(node.iter(include_text=True))
        stack.extend(reversed(children))
    close()
    return sections


def segment_plain(text: str) -> list[Section]:
    """A headerless text (a web page dump without markup): one section."""
    text = _BLANKS.sub("\n\n", text.strip())
    return [Section("", 0, text)] if has_visible(text) else []

"""The `packages` corpus source: the long descriptions (READMEs) of a declared set of Python distributions.

The set is an inventory file of pinned `name==version` lines, the format pip and uv write
(requirements/runtime.txt, the locked runtime set, is the default corpus): comments, `--hash`
options and blank lines are ignored, an entry whose environment marker does not hold here
(`; sys_platform == 'win32'`) is not part of the set. Every declared distribution must be installed
at exactly its pinned version, so the corpus is a function of the inventory, not of whatever else
the machine has installed; a missing or different one is an InputError naming the inventory line.
Documents come in the order of their canonical names, each with doc_id `name==version`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from humpback.corpus.config import SourceConfig
from humpback.errors import InputError

if TYPE_CHECKING:
    from humpback.corpus.sources import Format, Item

# whole-line options that would hide entries in another file or install a project from source
_UNSUPPORTED = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")
_COMMENT = re.compile(r"(^|\s)#.*$")
_OPTION = re.compile(r"\s+--?[A-Za-z]")  # per-requirement options after it: --hash=sha256:...


class Pin(NamedTuple):
    name: str  # canonical (PEP 503) name
    version: str  # as pinned
    line: int  # 1-based line of the entry in the inventory
    req: Requirement


def inventory_hint(path: str) -> str:
    return (f"install the pinned set (pip install -r {path}; bash scripts/install.sh does) "
            "or choose another corpus source")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) with comments removed and backslash continuations joined."""
    buf, start = [], 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).rstrip()
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        yield start, " ".join(buf).strip()
        buf = []
    if buf:
        yield start, " ".join(buf).strip()


def read_inventory(path: str | Path) -> list[Pin]:
    """The pins of the inventory file that apply to this interpreter and platform, sorted by name."""
    p = Path(path)
    if not str(path):
        raise InputError("params.yaml", "corpus source of kind packages needs a `path` (e.g. requirements/runtime.txt)")
    if not p.is_file():
        raise InputError(p, "inventory file not found (expected pinned name==version lines)")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(p, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(p, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    pins: dict[str, Pin] = {}
    for n, line in _logical_lines(text):
        if not line:
            continue
        if line.startswith("-"):
            if line.split("=", 1)[0].split()[0] in _UNSUPPORTED:
                raise InputError(p, f"'{line}' is not supported: list every distribution as name==version", f"line {n}")
            continue  # --index-url, --find-links, ...: where to install from, not what
        head = _OPTION.split(line, 1)[0]
        try:
            req = Requirement(head)
        except InvalidRequirement as e:
            raise InputError(p, f"not a requirement '{head}' ({e})", f"line {n}") from None
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator not in ("==", "===") or specs[0].version.endswith(".*"):
            raise InputError(p, f"'{head}' is not pinned to one version (expected name==version)", f"line {n}")
        try:
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
        except (UndefinedComparison, UndefinedEnvironmentName) as e:
            raise InputError(p, f"cannot evaluate the marker of '{head}' ({e})", f"line {n}") from None
        name = canonicalize_name(req.name)
        if name in pins:
            raise InputError(p, f"{name} is pinned twice (lines {pins[name].line} and {n})", f"line {n}")
        pins[name] = Pin(name, specs[0].version, n, req)
    if not pins:
        raise InputError(p, "no pinned distributions (name==version lines) apply to this environment")
    return [pins[k] for k in sorted(pins)]


def inventory_digest(pins: list[Pin]) -> str:
    """sha256 of the applied set, one `name==version` line each: equal digests, equal document sets."""
    return "sha256:" + hashlib.sha256("".join(f"{p.name}=={p.version}\n" for p in pins).encode()).hexdigest()


def installed_distributions() -> dict[str, importlib.metadata.PackageMetadata]:
    """Metadata of the installed distributions by canonical name; the first on sys.path wins, as for import."""
    found: dict[str, importlib.metadata.PackageMetadata] = {}
    for dist in importlib.metadata.distributions():
        try:
            meta = dist.metadata
            name = meta["Name"] if meta is not None else None
        except Exception:  # a half-uninstalled package without readable metadata is no distribution
            continue
        if name:
            found.setdefault(canonicalize_name(name), meta)
    return found


# ---------------------------------------------------------------- one distribution's description

_MD_HINT = re.compile(r"^#{1,6} \S|^```|\]\(https?://|^\s*[-*] \[", re.M)
_RST_HINT = re.compile(r"^\.\. \S|`_\s|::\s*$|^\s+:target:", re.M)


def sniff_markup(text: str) -> Format:
    """Markdown or reST for a description without a (useful) Description-Content-Type."""
    md, rst = len(_MD_HINT.findall(text)), len(_RST_HINT.findall(text))
    return "rst" if rst > md else "markdown"


def _description(meta) -> str:
    body = meta.get_payload() if hasattr(meta, "get_payload") else None
    if body and body.strip():
        return body
    desc = meta.get("Description") or ""
    if "\n" not in desc:
        return desc
    # Metadata 1.x folds the description into a header: continuation lines carry 8 spaces or "       |"
    first, *rest = desc.splitlines()
    unfolded = [line[8:] if line.startswith("        ") or line.startswith("       |") else line.lstrip() for line in rest]
    return "\n".join([first, *unfolded])


def _home_url(meta, name: str) -> str:
    home = (meta.get("Home-page") or "").strip()
    if home and home.upper() != "UNKNOWN":
        return home
    urls = [u.split(",", 1) for u in meta.get_all("Project-URL") or [] if "," in u]
    for label, url in urls:
        if label.strip().lower() in ("homepage", "home", "source", "repository", "source code", "documentation"):
            return url.strip()
    return urls[0][1].strip() if urls else f"https://pypi.org/project/{name}/"


def iter_packages(src: SourceConfig) -> Iterator[Item]:
    """The long descriptions of the distributions pinned in `src.path`, each installed at its pinned version."""
    from humpback.corpus.sources import DocReject, Document

    pins = read_inventory(src.path)
    installed = installed_distributions()
    for pin in pins:
        meta = installed.get(pin.name)
        if meta is None:
            raise InputError(src.path, f"{pin.name}=={pin.version} is pinned but not installed; {inventory_hint(src.path)}",
                             f"line {pin.line}")
        have = meta["Version"] or ""
        if not pin.req.specifier.contains(have, prereleases=True):
            raise InputError(src.path, f"{pin.name} is installed at {have} but pinned at {pin.version}; "
                                       f"{inventory_hint(src.path)}", f"line {pin.line}")
        doc_id = f"{pin.name}=={pin.version}"
        url = _home_url(meta, meta["Name"])
        text = _description(meta)
        if not text.strip() or text.strip().upper() == "UNKNOWN":
            yield DocReject(src.label, doc_id, url, "empty_document", "no long description")
            continue
        ctype = (meta.get("Description-Content-Type") or "").split(";")[0].strip().lower()
        fmt: Format = {"text/markdown": "markdown", "text/x-rst": "rst"}.get(ctype) or sniff_markup(text)
        yield Document(src.label, doc_id, url, fmt, text, src.headerless_ok)

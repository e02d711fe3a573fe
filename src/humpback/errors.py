"""Errors a user can act on. Stages print them as one line and exit 2, never a traceback.

Also the one redaction rule for credentials (`redact_url`, `redact_text`): wherever a URL or an error
text is printed, logged or stored, a key in the URL's userinfo (`http://user:KEY@host/v1`), in a
query parameter that names a credential (`?api_key=`, `?key=`, `token=`, `sig=`, ...) and any key
read from the environment (`register_secret`) becomes `***`.
"""

from __future__ import annotations

import errno as _errno
import logging
import re
import threading
from urllib.parse import quote, unquote, urlsplit, urlunsplit


class HumpbackError(Exception):
    """Base class: the message names the file, the record or the key that is wrong."""


class ConfigError(HumpbackError):
    """params.yaml is malformed, has an unknown key or a value of the wrong type."""


class InputError(HumpbackError):
    """An input file is missing, empty, unreadable or has a malformed record."""

    def __init__(self, path, message: str, record: int | str | None = None):
        self.path, self.record = str(path), record
        where = f"{path}" + (f", record {record}" if record is not None else "")
        # one line, whatever a parser put in its message: stages report errors as a single line
        super().__init__(f"{where}: {' '.join(str(message).split())}")


class OutputError(HumpbackError):
    """An output could not be written (disk full, quota, read-only or forbidden directory): the
    environment's fault, not the data's. The previous output, if any, is left as it was."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {' '.join(str(message).split())}")


class EmptyResultError(HumpbackError):
    """A step kept nothing, so the run would be meaningless (no seed pairs, a threshold that keeps nothing)."""


# ---------------------------------------------------------------------------------------------
# OS-level write failures: the user's environment, worded in one line

# errno values that only an environment can cause (never a wrong path built by the code)
ENVIRONMENT_ERRNOS = frozenset(getattr(_errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(_errno, n))
# these are the environment's when they concern a named path (a permission, a failing disk)
PATH_ERRNOS = frozenset(getattr(_errno, n) for n in ("EACCES", "EPERM", "EIO") if hasattr(_errno, n))
# the errno a library put only into its message: pyarrow "[errno 28]", Rust (polars) "(os error 28)",
# and Rust's Debug form (safetensors) "Os { code: 28, kind: StorageFull, ... }"
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]|\(os error (\d+)\)|\bOs \{ code: (\d+)", re.IGNORECASE)


def os_errno(e: BaseException) -> int | None:
    """The errno of an OS-level failure, also when a library wrapped it in its own exception text."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    m = _ERRNO_IN_TEXT.search(str(e))
    return int(next(g for g in m.groups() if g)) if m else None


def os_reason(code: int) -> str:
    import os

    name = _errno.errorcode.get(code, str(code))
    return f"{os.strerror(code)} ({name})"


# ---------------------------------------------------------------------------------------------
# credentials

REDACTED = "***"
# a query or fragment parameter whose name says it carries a credential
_SECRET_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session|cookie", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_secrets: set[str] = set()
_lock = threading.Lock()


def _redact_params(text: str) -> str:
    if "=" not in text:
        return text
    out = []
    for pair in text.split("&"):
        name, eq, value = pair.partition("=")
        out.append(f"{name}={REDACTED}" if eq and value and _SECRET_NAME.search(unquote(name)) else pair)
    return "&".join(out)


def redact_url(url: str) -> str:
    """`url` without credentials: the userinfo becomes ***, as does every query (and fragment)
    parameter whose name says it is a key; scheme, host, port, path and other parameters stay, so
    the endpoint is still named. A URL with nothing to hide comes back unchanged."""
    url = str(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # not even splittable: keep the scheme and host-ish start only
        return re.sub(r"//[^/?#]*@", f"//{REDACTED}@", url.split("?", 1)[0])
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def url_secrets(url: str) -> list[str]:
    """The credential values `redact_url` hides in `url` (userinfo, key-like parameters)."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return []
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        # the whole userinfo and its password; a user name alone ("user") is no secret
        found += [userinfo] + ([userinfo.split(":", 1)[1]] if ":" in userinfo else [])
    for text in (parts.query, parts.fragment):
        for pair in text.split("&"):
            name, eq, value = pair.partition("=")
            if eq and value and _SECRET_NAME.search(unquote(name)):
                found.append(value)
    return [s for s in found if s]


def register_secret(value: str | None) -> None:
    """Remember a credential (a key read from the environment, a URL's password) so that
    `redact_text` hides it wherever it turns up (an error body that echoes it, a log line)."""
    if value and len(value) >= 6:  # shorter strings are not keys, and would blank ordinary text
        with _lock:
            _secrets.update({value, unquote(value), quote(value, safe="")})


def register_url(url: str) -> None:
    for value in url_secrets(url):
        register_secret(value)


def _redact_match(m: re.Match) -> str:
    url = m.group(0)
    body = url.rstrip(".,;:!?)]}")  # the sentence's punctuation after a URL is not part of it
    return redact_url(body) + url[len(body):]


def redact_text(text: str) -> str:
    """`text` with every URL's credentials and every registered secret replaced by ***."""
    text = _URL.sub(_redact_match, str(text))
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites a record's message through `redact_text` (installed on the
    stage's log handlers, and on the HTTP client's loggers, which log every request's URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_redaction(target: logging.Logger | logging.Handler) -> None:
    """Add one RedactingFilter to a logger or a handler (idempotent)."""
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())

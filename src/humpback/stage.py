"""The one wrapper every `stages/*.py` script uses: clear one-line errors, timing, logging, and the
stage's compute ledger: run under DVC, a stage that ends well writes metrics/cost/<stage>.json (its
seconds, device, backend, tokens and examples; humpback.ledger), one of its own outs.

What becomes `error: <message>` and exit status 2, never a traceback:
* a HumpbackError: a bad input, param or result, worded by the code that found it;
* an OSError the environment caused: disk full, quota, file too large or a read-only filesystem
  (ENOSPC, EDQUOT, EFBIG, EROFS) anywhere, and a permission or I/O error (EACCES, EPERM, EIO) on a
  named path. These name the path and say what the system said. A library's own exception whose
  text carries one of the first four (polars "(os error 28)", safetensors "Os { code: 28 ...") too.
Anything else (a missing file the code built the path of, a TypeError) is a bug and keeps its
traceback. Every error line and every log line goes through `redact_text`: no credential of a URL,
and no key read from the environment, is ever printed.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable

from humpback import ledger
from humpback.errors import (
    ENVIRONMENT_ERRNOS,
    PATH_ERRNOS,
    HumpbackError,
    install_redaction,
    os_errno,
    os_reason,
    redact_text,
)

log = logging.getLogger("humpback")


def environment_error(e: BaseException) -> str | None:
    """The one line for a failure the environment caused, or None when it looks like a bug.

    An OSError by its errno; another library's exception (polars, safetensors) only when its text
    carries a disk-full or read-only errno, which no bug produces."""
    if isinstance(e, OSError):
        if e.errno in ENVIRONMENT_ERRNOS or (e.errno in PATH_ERRNOS and e.filename is not None):
            where = f"{e.filename}: " if e.filename is not None else ""
            also = f" (and {e.filename2})" if getattr(e, "filename2", None) else ""
            return f"{where}{os_reason(e.errno)}{also}"
        return None
    code = os_errno(e)
    if code in ENVIRONMENT_ERRNOS:
        return f"{os_reason(code)} ({type(e).__name__}: {str(e)[:200]})"
    return None


def stage(fn: Callable[..., object] | None = None, *, cost: bool = True):
    """Run `fn`; a HumpbackError (or an OSError of the environment) becomes `error: <message>` on
    stderr and exit status 2. Under DVC, a run that ends well writes the stage's cost entry;
    `@stage(cost=False)` is for the stage that merges the entries, whose dep their directory is."""
    if fn is None:
        return functools.partial(stage, cost=cost)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        for handler in logging.getLogger().handlers:
            install_redaction(handler)
        ledger.reset()
        start = time.perf_counter()
        try:
            fn(*args, **kwargs)
            seconds = time.perf_counter() - start
            name = ledger.stage_name() if cost else None
            # a distributed run's processes all run the script; the main one speaks for them
            if name is not None and os.environ.get("RANK", "0") == "0":
                ledger.write_entry(name, seconds)
        except HumpbackError as e:
            print(f"error: {redact_text(' '.join(str(e).split()))}", file=sys.stderr)
            raise SystemExit(2) from None
        except Exception as e:
            line = environment_error(e)
            if line is None:
                raise
            print(f"error: {redact_text(' '.join(line.split()))}", file=sys.stderr)
            raise SystemExit(2) from None
        log.info("%s done in %.1f s", fn.__module__ if fn.__name__ == "main" else fn.__name__, seconds)

    return wrapper

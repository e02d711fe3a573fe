"""Writing an export folder whole: built beside its place and renamed over it, so a killed run leaves
the previous folder or none, never a mix of old and new cards."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from humpback.errors import ENVIRONMENT_ERRNOS, PATH_ERRNOS, OutputError, os_errno, os_reason


def write_folder(out: str | Path, fill: Callable[[Path], None]) -> None:
    """Call `fill(staging)` on an empty directory beside `out`, then put it in `out`'s place."""
    out = Path(out)
    staging = out.with_name(f".{out.name}.tmp")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        fill(staging)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        code = os_errno(e) if isinstance(e, Exception) else None
        if code not in ENVIRONMENT_ERRNOS | PATH_ERRNOS:
            raise
        raise OutputError(out, f"cannot write: {os_reason(code)}") from None

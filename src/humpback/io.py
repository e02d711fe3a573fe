"""Atomic writes, and whole-file readers (JSON, tables) shared by every stage.

Every output is written to a temporary file in the same directory and renamed into place, so a
stage killed mid-write leaves the previous output or none, never a half file. Record-by-record
reading, and the wording of every input fault, live in `humpback.readers`.

A temporary file is `.<name>.<pid>.<random>.tmp`, created like `open(path, "w")` creates a file (mode
0666 less the umask, so the renamed output has the usual permissions), and its writer holds an
flock on it until it is renamed or removed. One left by a killed run is removed by the next write
of the same output; one whose writer is alive (a second run of the same stage at the same time)
is left alone.

A write the environment refuses (disk full, quota, a read-only or forbidden directory) becomes an
OutputError naming the output; the previous output stays as it was and no temporary file remains.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from humpback.errors import ENVIRONMENT_ERRNOS, PATH_ERRNOS, OutputError, os_errno, os_reason

_PID_IN_NAME = re.compile(r"\.(\d+)\.[0-9a-f]+\.tmp$")
_live: set[str] = set()  # this process's temporary files in use (threads share the pid)
_live_lock = threading.Lock()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _stale(tmp: Path) -> bool:
    """True when no live writer holds `tmp`: its pid (if its name has one) is gone from this
    machine, and nobody holds its lock (a writer in another pid namespace or on another host)."""
    m = _PID_IN_NAME.search(tmp.name)
    if m and int(m.group(1)) == os.getpid():  # this process's: stale unless a thread of ours holds it
        with _live_lock:
            return str(tmp.absolute()) not in _live
    if m and _pid_alive(int(m.group(1))):
        return False
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:  # gone already, or a symlink: not ours to judge
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its writer is alive
        return False
    finally:
        os.close(fd)  # closing drops the lock
    return True


def _release(tmp: Path) -> None:
    with _live_lock:
        _live.discard(str(tmp.absolute()))


def _remove_stale(path: Path) -> None:
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed earlier run
        if _stale(old):
            old.unlink(missing_ok=True)


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, opened and locked; mode 0666 less the umask."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with _live_lock:  # claimed before it exists: another thread's cleanup never sees it unclaimed
            _live.add(str(tmp.absolute()))
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except BaseException:
            _release(tmp)
            if sys.exc_info()[0] is FileExistsError:
                continue
            raise
        with contextlib.suppress(OSError):  # a filesystem without locks: the pid in the name still guards it
            fcntl.flock(fd, fcntl.LOCK_EX)
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path))


def _concerns(named: Path, path: Path) -> bool:
    """True when an error about `named` is about writing `path`: the output, one of its temporary
    files, or a directory on the way to it."""
    return (named == path or named in path.parents
            or (named.parent == path.parent and named.name.startswith(f".{path.name}.")))


def _write_fault(e: BaseException, path: Path) -> str | None:
    """Why the environment refused to write `path` (None when `e` is something else: a bug, or a
    fault of another file the block touched)."""
    code = os_errno(e)
    if code is None:
        return None
    named = getattr(e, "filename", None)
    if named is not None and not _concerns(Path(os.path.abspath(named)), Path(os.path.abspath(path))):
        return None  # about another file: let its own handler word it
    if code in ENVIRONMENT_ERRNOS or (code in PATH_ERRNOS and named is not None):
        return os_reason(code)
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    An OS-level refusal to write (ENOSPC, EDQUOT, EROFS, EACCES, ...) raises OutputError naming
    `path`; the previous output is untouched and the temporary file is removed."""
    path = Path(path)
    fd, tmp = -1, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        fd, tmp = _open_temp(path)
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        reason = _write_fault(e, path)
        if reason is None:
            raise
        kept = "; the previous output is kept" if path.exists() else ""
        raise OutputError(path, f"cannot write: {reason}{kept}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            _release(tmp)
        if fd >= 0:
            os.close(fd)


def write_parquet(df: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n", encoding="utf-8")


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

"""Errors a user can act on. Stages print them as one line and exit 2, never a traceback."""

from __future__ import annotations


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


class EmptyResultError(HumpbackError):
    """A step kept nothing, so the run would be meaningless (no seed pairs, a threshold that keeps nothing)."""

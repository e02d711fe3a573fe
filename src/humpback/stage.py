"""The one wrapper every `stages/*.py` script uses: clear one-line errors, timing, logging."""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable

from humpback.errors import HumpbackError

log = logging.getLogger("humpback")


def stage(fn: Callable[..., object]) -> Callable[..., None]:
    """Run `fn`; a HumpbackError becomes `error: <message>` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        start = time.perf_counter()
        try:
            fn(*args, **kwargs)
        except HumpbackError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        log.info("%s done in %.1f s", fn.__module__ if fn.__name__ == "main" else fn.__name__,
                 time.perf_counter() - start)

    return wrapper

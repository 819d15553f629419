"""Logging set-up shared by the workflow's scripts and the CLIs."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_to(path: str | Path) -> Iterator[None]:
    """Send logging records, warnings, stdout and stderr (progress bars) to ``path`` while inside."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter(FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
        except Exception:
            logging.getLogger("lossbench").exception("job failed")
            raise
        finally:
            root.removeHandler(handler)

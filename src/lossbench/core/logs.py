"""Logging set-up shared by the workflow's scripts and the CLIs, and how an error reaches the user."""

from __future__ import annotations

import contextlib
import logging
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
        except Exception as error:
            if not reported_to_user(error):
                logging.getLogger("lossbench").exception("job failed")
                raise
            logging.getLogger("lossbench").error("job failed: %s", error)
            reported = error
        else:
            reported = None
        finally:
            root.removeHandler(handler)
    if reported is not None:
        # Outside the redirection: Snakemake shows this one line, and the log holds it too.
        raise SystemExit(f"{type(reported).__name__}: {reported}") from None


def reported_to_user(error: BaseException) -> bool:
    """Whether ``error`` is a bad input with a one-line message (shown as it is) rather than a defect (traceback).

    Bad values and missing files raise ValueError and FileNotFoundError, and the project's own
    errors (download, device, non-finite training) are defined in its modules.
    """
    return isinstance(error, (ValueError, FileNotFoundError)) or type(error).__module__.startswith("lossbench.")

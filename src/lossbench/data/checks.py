"""Data checks that run before any data output is replaced, and the small reports they leave.

The workflow runs every check of user data (a ``folder`` validation set, fastMRI folders, the ImageNet
subset) in a rule of its own, ahead of the rule that writes the data output. A failing check stops
there, so the earlier data outputs stay in place; its problems, one line per file, are in the check's
log, which Snakemake keeps after a failure (it deletes only a failed job's outputs). A passing check
writes the list of files it checked, which the data rule takes as an input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from lossbench.core.logs import log_to
from lossbench.data.imagenet import write_csv_atomic
from lossbench.data.images import list_images, read_rgb

log = logging.getLogger(__name__)

CHECK_COLUMNS = ("path", "bytes", "mtime_ns")

#: A check: writes its output when the data are usable and returns one line per unusable file
#: (naming it); it may also raise ``FileNotFoundError`` or ``ValueError`` with a one-line message.
Check = Callable[[], list[str]]


def write_check_report(path: str | Path, files: list[Path]) -> None:
    """Write the checked ``files`` (absolute path, size, modification time) to CSV ``path`` atomically."""
    write_csv_atomic(
        path, CHECK_COLUMNS, [(str(file.resolve()), file.stat().st_size, file.stat().st_mtime_ns) for file in files]
    )


def run_check(check: Check, log_path: str | Path) -> str | None:
    """Run ``check`` with logging (and the problem lines) going to ``log_path``.

    Returns:
        None when the check passed, else a one-line message for the user naming the first problem,
        how many more there are, and the log that lists them all.
    """
    with log_to(log_path):
        try:
            problems = check()
        except (FileNotFoundError, ValueError) as error:
            problems = [str(error)]
        for problem in problems:
            log.error("%s", problem)
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}; earlier data outputs are kept; every problem is listed in {log_path}"


def checked_files(files: list[Path], problems: list[str], report: str | Path) -> list[str]:
    """Write ``report`` of the checked ``files`` when there are no ``problems``; return the problems."""
    if not problems:
        write_check_report(report, files)
        log.info("%d files checked, all usable: %s", len(files), report)
    return problems


def check_image_folder(folder: str | Path) -> tuple[list[Path], list[str]]:
    """Decode every image of ``folder`` as training and validation will (``read_rgb``), to the end.

    Returns:
        The image files, and one line per unreadable file naming it.

    Raises:
        FileNotFoundError: ``folder`` is missing or holds no image files.
    """
    files = list(list_images(folder).values())
    problems = []
    for path in files:
        try:
            read_rgb(path)
        except (ValueError, Image.DecompressionBombError) as error:
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
            problems.append(text if text.startswith(f"{path}: ") else f"{path}: cannot read as an image ({text})")
    return files, problems

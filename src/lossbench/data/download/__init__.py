"""Robust HTTP downloads and safe archive extraction for the real datasets and weights.

:func:`download` retries with exponential backoff, resumes an interrupted transfer from its ``.part``
file with an HTTP ``Range`` request, verifies a SHA-256 digest (or a digest prefix, as torchvision
names its checkpoints), and only then renames the file into place: the final path either holds a
verified file or nothing. A part file is resumed only for the URL recorded next to it, and only
where the server's answer proves the bytes belong together; an overall deadline and a minimum rate
stop servers that stall or trickle. Every failure is a :class:`DownloadError` with one line naming
the URL or file and what to do.

Modules: :mod:`.retries` (:func:`download`, :func:`fetch_checkpoint`), :mod:`.attempt` (one attempt and
its part file), :mod:`.archives` (:func:`extract_tar`) and :mod:`.common` (the error, limits and
digests); every public name is imported here.
"""

from lossbench.data.download.archives import extract_tar
from lossbench.data.download.common import (
    CHUNK,
    DEFAULT_DEADLINE,
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW,
    RETRY_STATUSES,
    DownloadError,
    check_digest,
    sha256_file,
)
from lossbench.data.download.retries import download, fetch_checkpoint

__all__ = [
    "CHUNK",
    "DEFAULT_DEADLINE",
    "DEFAULT_MIN_RATE",
    "DEFAULT_RATE_WINDOW",
    "DownloadError",
    "RETRY_STATUSES",
    "check_digest",
    "download",
    "extract_tar",
    "fetch_checkpoint",
    "sha256_file",
]

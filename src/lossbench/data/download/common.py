"""What the modules of a download share: its error, the chunk size and limits, and SHA-256 checks."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: Bytes read per chunk, both from the network and when hashing files.
CHUNK = 1 << 20
#: HTTP statuses worth retrying: the server may recover, unlike 404 or 403.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_HEX = re.compile(r"[0-9a-f]+")
#: Seconds a whole download may take by default. A day: a 100 GB archive (fastMRI's come in
#: archives of that order) needs a sustained ~1.2 MB/s to finish in it.
DEFAULT_DEADLINE = 24 * 3600.0
#: Bytes per second below which an attempt is aborted by default, measured over a window: a stalled
#: or trickling server (1 byte/s defeats the per-read timeout) is dropped and retried.
DEFAULT_MIN_RATE = 1024.0
DEFAULT_RATE_WINDOW = 60.0


class DownloadError(RuntimeError):
    """A download or extraction failed; the message is one line naming the URL or file."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_digest(path: str | Path, expected: str | None, source: str | None = None, label: str | None = None) -> None:
    """Raise :class:`DownloadError` unless ``path``'s SHA-256 starts with ``expected`` (None: no check).

    Args:
        path: File to hash.
        expected: Full 64-digit hex digest, or a prefix of at least 8 digits.
        source: Where the file came from (a URL), named in the message.
        label: Name of the file in the message; default its name.
    """
    if expected is None:
        return
    expected = expected.lower()
    if not (8 <= len(expected) <= 64 and _HEX.fullmatch(expected)):
        raise DownloadError(f"{path}: expected SHA-256 {expected!r} is not 8 to 64 hex digits")
    got = sha256_file(path)
    if not got.startswith(expected):
        origin = f" (from {source})" if source else ""
        raise DownloadError(
            f"{label or Path(path).name}{origin}: checksum mismatch, expected SHA-256 {expected}, got {got}"
        )


def _shown(url: str) -> str:
    """``url`` without its query: signed URLs (fastMRI's) carry credentials that must not be logged."""
    return url.split("?", 1)[0]


def _reason(error: BaseException, url: str) -> str:
    """First line of ``error``'s message, with ``url``'s query (which requests repeats) removed."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    query = url.partition("?")[2]
    return text.replace("?" + query, "") if query else text

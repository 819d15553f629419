"""Robust HTTP downloads and safe archive extraction for the real datasets and weights.

:func:`download` retries with exponential backoff, resumes an interrupted transfer from its ``.part``
file with an HTTP ``Range`` request, verifies a SHA-256 digest (or a digest prefix, as torchvision
names its checkpoints), and only then renames the file into place: the final path either holds a
verified file or nothing. Every failure is a :class:`DownloadError` with one line naming the URL or
file and what to do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

log = logging.getLogger(__name__)

#: Bytes read per chunk, both from the network and when hashing files.
CHUNK = 1 << 20
#: HTTP statuses worth retrying: the server may recover, unlike 404 or 403.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_HEX = re.compile(r"[0-9a-f]+")


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
        raise DownloadError(f"{label or Path(path).name}{origin}: checksum mismatch, expected SHA-256 {expected}, got {got}")


def _shown(url: str) -> str:
    """``url`` without its query: signed URLs (fastMRI's) carry credentials that must not be logged."""
    return url.split("?", 1)[0]


def _reason(error: BaseException, url: str) -> str:
    """First line of ``error``'s message, with ``url``'s query (which requests repeats) removed."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    query = url.partition("?")[2]
    return text.replace("?" + query, "") if query else text


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    manual_hint: str | None = None,
    validate: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming, retrying and verifying; return ``dest``.

    An existing ``dest`` that passes the checks is kept without network access. The transfer goes to
    ``dest.part`` (resumed with ``Range`` on the next attempt or run); only a complete, verified file
    is renamed to ``dest``. A part file that fails verification is deleted, so the next run starts
    afresh instead of resuming corrupt bytes.

    Args:
        url: HTTP(S) address.
        dest: Final path; its folder is created.
        sha256: Expected SHA-256 (full digest or a prefix of ≥ 8 hex digits); None skips the check.
        retries: Attempts after the first on connection errors, timeouts, dropped transfers and
            retryable HTTP statuses (:data:`RETRY_STATUSES`).
        backoff: Seconds before the first retry, doubled after each.
        timeout: Seconds to wait for the connection and between received bytes.
        manual_hint: Appended to the error when the server cannot be reached, e.g. where to put the
            file by hand.
        validate: Extra check of the complete file (e.g. that it decodes); raises ``ValueError``.

    Raises:
        DownloadError: HTTP error, unreachable server after all retries, or failed verification.
    """
    dest = Path(dest)
    if dest.is_file():
        try:
            _verify(dest, dest.name, url, sha256, validate)
        except DownloadError as error:
            # Never deleted here: the file may be the user's own copy.
            raise DownloadError(f"{error}; {dest} exists but fails this check, remove it to download it again") from None
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    delay, last_error = backoff, None
    for attempt in range(retries + 1):
        if attempt:
            log.warning("%s: attempt %d of %d failed (%s); retrying in %.1f s", _shown(url), attempt, retries + 1, _reason(last_error, url), delay)
            time.sleep(delay)
            delay *= 2
        try:
            _fetch(url, part, timeout)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError, _Incomplete, _RetryableStatus) as error:
            last_error = error
        except requests.RequestException as error:  # a malformed URL, too many redirects: no retry helps
            raise DownloadError(f"cannot download {_shown(url)}: {_reason(error, url)}") from None
    else:
        hint = f"; {manual_hint}" if manual_hint else ""
        raise DownloadError(f"cannot download {_shown(url)} after {retries + 1} attempts ({_reason(last_error, url)}){hint}")
    try:
        _verify(part, dest.name, url, sha256, validate)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    log.info("downloaded %s to %s", _shown(url), dest)
    return dest


class _Incomplete(OSError):
    """The server closed the connection before sending the announced length."""


class _RetryableStatus(OSError):
    """A server-side HTTP status that may go away on retry."""


def _fetch(url: str, part: Path, timeout: float) -> None:
    """One attempt: append the rest of ``url`` to ``part`` (a Range request when it has bytes)."""
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    # Without identity encoding a server may gzip the body, and Range offsets would then not match
    # the bytes written to the part file.
    headers["Accept-Encoding"] = "identity"
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416 and have:
            # The part file already holds every byte (an earlier attempt died before renaming).
            return
        if response.status_code in RETRY_STATUSES:
            raise _RetryableStatus(f"HTTP {response.status_code} {response.reason}")
        if response.status_code >= 400:
            raise DownloadError(f"cannot download {_shown(url)}: HTTP {response.status_code} {response.reason}")
        resumed = response.status_code == 206
        if have and not resumed:
            log.info("%s: server ignored the Range request; downloading from the start", _shown(url))
        expected = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if resumed else "wb") as handle:
            # read1 on the raw stream (whose errors are urllib3's) returns what has arrived instead of
            # waiting for a full chunk, so every byte received before a dropped connection reaches the
            # part file and is not fetched again.
            while chunk := response.raw.read1(CHUNK):
                handle.write(chunk)
                received += len(chunk)
        if expected is not None and received < int(expected):
            raise _Incomplete(f"connection closed after {received} of {expected} bytes")


def _verify(path: Path, label: str, url: str, sha256: str | None, validate: Callable[[Path], None] | None) -> None:
    check_digest(path, sha256, _shown(url), label)
    if validate is not None:
        try:
            validate(path)
        except ValueError as error:
            raise DownloadError(f"{label} (from {_shown(url)}): {error}") from None


def extract_tar(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract the tar archive (``.tar``, ``.tar.gz``, ``.tar.xz``, ...) into ``target``; return the files.

    The archive is read once, front to back (fastMRI's archives hold hundreds of gigabytes), and each
    member is checked before it is written: absolute names, ``..`` components, links and device
    files are refused, so nothing is written outside ``target``. An unsafe member stops the
    extraction; the members before it stay in ``target``.

    Raises:
        DownloadError: The archive is unreadable or has an unsafe member.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    files = []
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                destination = (root / member.name).resolve()
                if not (member.isfile() or member.isdir()):
                    raise DownloadError(f"{archive}: member {member.name!r} is a link or special file; refusing to extract")
                if destination != root and root not in destination.parents:
                    raise DownloadError(f"{archive}: member {member.name!r} would be written outside {target}; refusing to extract")
                # The "data" filter repeats these checks inside tarfile and clears permission bits
                # that would make files executable or writable by others.
                tar.extract(member, target, filter="data")
                if member.isfile():
                    files.append(target / member.name)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadError(f"{archive}: cannot extract ({error})") from None
    return files


#: torchvision names checkpoints ``<name>-<first hex digits of the SHA-256>.<ext>``.
_CHECKPOINT_NAME = re.compile(r"-([0-9a-f]{8,64})\.[a-z]+$")


def fetch_checkpoint(url: str, dest: str | Path, **download_options) -> Path:
    """Download a torchvision checkpoint to ``dest``, verifying the SHA-256 prefix in its file name.

    This is torchvision's own ``check_hash`` rule: ``alexnet-owt-7be5be79.pth`` must hash to a digest
    starting with ``7be5be79``.

    Raises:
        DownloadError: The URL's file name carries no hash, or the download fails or mismatches.
    """
    name = Path(url.split("?", 1)[0]).name
    match = _CHECKPOINT_NAME.search(name)
    if match is None:
        raise DownloadError(f"{url}: file name {name!r} carries no SHA-256 prefix (expected <name>-<hex digits>.pth)")
    hint = f"download {url} elsewhere and put it at {dest}, or set evaluation.lpips_weights to its path"
    return download(url, dest, match.group(1), manual_hint=hint, **download_options)

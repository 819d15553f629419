"""Robust HTTP downloads and safe archive extraction for the real datasets and weights.

:func:`download` retries with exponential backoff, resumes an interrupted transfer from its ``.part``
file with an HTTP ``Range`` request, verifies a SHA-256 digest (or a digest prefix, as torchvision
names its checkpoints), and only then renames the file into place: the final path either holds a
verified file or nothing. A part file is resumed only for the URL recorded next to it, and only
where the server's answer proves the bytes belong together; an overall deadline and a minimum rate
stop servers that stall or trickle. Every failure is a :class:`DownloadError` with one line naming
the URL or file and what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

log = logging.getLogger(__name__)

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


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    deadline: float = DEFAULT_DEADLINE,
    min_rate: float = DEFAULT_MIN_RATE,
    rate_window: float = DEFAULT_RATE_WINDOW,
    allow_unverified: bool = False,
    manual_hint: str | None = None,
    validate: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming, retrying and verifying; return ``dest``.

    An existing ``dest`` that passes the checks is kept without network access. The transfer goes to
    ``dest.part``, next to a record ``dest.part.json`` of where it came from (URL without its query,
    size, ETag and Last-Modified). The next attempt or run resumes the part with ``Range`` (and
    ``If-Range``, so a changed file is sent whole) only when the record names the same URL; a part
    without a record, of another URL, longer than the file, answered with 416, or resumed by the
    server at another offset than asked is discarded and the file fetched from the start, so bytes of
    two files are never joined. Only a complete, verified file is renamed to ``dest``; a part that
    fails verification is deleted.

    A body whose end cannot be told from a dropped connection (no ``Content-Length``, not chunked) is
    accepted only with ``sha256``, or with ``allow_unverified`` and a logged "UNVERIFIED" warning.

    Args:
        url: HTTP(S) address.
        dest: Final path; its folder is created.
        sha256: Expected SHA-256 (full digest or a prefix of ≥ 8 hex digits); None skips the check.
        retries: Attempts after the first on connection errors, timeouts, dropped or too slow
            transfers and retryable HTTP statuses (:data:`RETRY_STATUSES`).
        backoff: Seconds before the first retry, doubled after each.
        timeout: Seconds to wait for the connection and between received bytes.
        deadline: Seconds for the whole download, all attempts and pauses included. It is checked
            between reads, so it may be overrun by up to ``timeout``; the part file is kept for a
            rerun to resume.
        min_rate: Bytes per second below which an attempt is aborted (and retried), measured over
            each ``rate_window`` seconds; 0 disables the check.
        rate_window: Seconds over which ``min_rate`` is measured.
        allow_unverified: Accept a body of unknown length without ``sha256``.
        manual_hint: Appended to the error when the server cannot be reached, e.g. where to put the
            file by hand.
        validate: Extra check of the complete file (e.g. that it decodes); raises ``ValueError``.

    Raises:
        DownloadError: HTTP error, unreachable or too slow server after all retries, deadline
            passed, a destination that is not a file path, or failed verification.
        ValueError: ``deadline`` or ``rate_window`` not positive, or ``min_rate`` negative.
    """
    if not (deadline > 0 and rate_window > 0 and min_rate >= 0):
        raise ValueError(
            f"download: need deadline > 0, rate_window > 0 and min_rate >= 0, got {deadline}, {rate_window}, {min_rate}"
        )
    dest = Path(dest)
    if dest.exists() and not dest.is_file():
        raise DownloadError(
            f"{dest}: is a folder or special file, expected the path of the file to download {_shown(url)} to"
        )
    if dest.is_file():
        try:
            _verify(dest, dest.name, url, sha256, validate)
        except DownloadError as error:
            # Never deleted here: the file may be the user's own copy.
            raise DownloadError(
                f"{error}; {dest} exists but fails this check, remove it to download it again"
            ) from None
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{dest}: cannot create its folder ({error.strerror or error})") from None
    part = dest.with_name(dest.name + ".part")
    hint = f"; {manual_hint}" if manual_hint else ""
    limits = _Limits(time.monotonic() + deadline, deadline, min_rate, rate_window, hint)
    delay, last_error = backoff, None
    for attempt in range(retries + 1):
        if attempt:
            log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.1f s",
                _shown(url),
                attempt,
                retries + 1,
                _reason(last_error, url),
                delay,
            )
            limits.check(url, part, pause=delay)
            time.sleep(delay)
            delay *= 2
        try:
            framed = _fetch(url, part, timeout, limits, verifiable=sha256 is not None or allow_unverified)
            break
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError,
            _Incomplete,
            _RetryableStatus,
            _TooSlow,
        ) as error:
            last_error = error
        except requests.RequestException as error:  # a malformed URL, too many redirects: no retry helps
            raise DownloadError(f"cannot download {_shown(url)}: {_reason(error, url)}") from None
        except OSError as error:  # writing the part file: disk full, no permission
            raise DownloadError(f"cannot download {_shown(url)} to {part}: {error}") from None
    else:
        raise DownloadError(
            f"cannot download {_shown(url)} after {retries + 1} attempts ({_reason(last_error, url)}){hint}"
        )
    try:
        _verify(part, dest.name, url, sha256, validate)
    except DownloadError:
        _remove_part(part)
        raise
    os.replace(part, dest)
    _record_path(part).unlink(missing_ok=True)
    if not framed and sha256 is None:
        log.warning(
            "%s: saved %s UNVERIFIED: the server sent no Content-Length and no SHA-256 was given, so a cut-off transfer"
            " cannot be told from a complete one",
            _shown(url),
            dest,
        )
    log.info("downloaded %s to %s", _shown(url), dest)
    return dest


class _Incomplete(OSError):
    """The server closed the connection before sending the announced length."""


class _RetryableStatus(OSError):
    """A server-side HTTP status that may go away on retry."""


class _TooSlow(OSError):
    """The transfer rate fell below the minimum over a measuring window."""


@dataclass(frozen=True)
class _Limits:
    """The overall deadline (a ``time.monotonic`` instant) and the minimum rate of one download."""

    until: float
    deadline: float
    min_rate: float
    rate_window: float
    hint: str

    def check(self, url: str, part: Path, pause: float = 0.0) -> None:
        """Raise :class:`DownloadError` if the deadline has passed, or would during ``pause`` seconds."""
        if time.monotonic() + pause > self.until:
            have = part.stat().st_size if part.is_file() else 0
            raise DownloadError(
                f"cannot download {_shown(url)}: not finished within the deadline of {self.deadline:g} s "
                f"({have} bytes in {part.name}, which a rerun resumes){self.hint}"
            )


def _record_path(part: Path) -> Path:
    """The record of where ``part``'s bytes came from."""
    return part.with_name(part.name + ".json")


def _remove_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _record_path(part).unlink(missing_ok=True)


def _discard(url: str, part: Path, reason: str) -> None:
    log.warning("%s: discarding %s (%s); downloading from the start", _shown(url), part.name, reason)
    _remove_part(part)


def _read_record(part: Path) -> dict | None:
    try:
        record = json.loads(_record_path(part).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _resumable_bytes(url: str, part: Path) -> tuple[int, dict | None]:
    """Bytes of ``part`` that may be resumed for ``url``, and its record; discards a part of another source."""
    if not part.is_file():
        _record_path(part).unlink(missing_ok=True)
        return 0, None
    record = _read_record(part)
    have = part.stat().st_size
    if record is None:
        _discard(url, part, "it has no record of which URL it came from")
    elif record.get("url") != _shown(url):
        _discard(url, part, f"it belongs to {record.get('url')}")
    elif isinstance(record.get("size"), int) and have > record["size"]:
        _discard(url, part, f"it holds {have} bytes, more than the file's {record['size']}")
    else:
        return have, record
    return 0, None


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _fetch(url: str, part: Path, timeout: float, limits: _Limits, verifiable: bool) -> bool:
    """One attempt: append the rest of ``url`` to ``part`` (a Range request when it has bytes).

    Returns:
        Whether the body's length was known (``Content-Length``, a ``Content-Range`` or chunked
        framing), i.e. whether a cut-off transfer would have been noticed.
    """
    have, record = _resumable_bytes(url, part)
    if record is not None and have == record.get("size"):
        return True  # every byte is there: an earlier attempt died before verifying and renaming
    limits.check(url, part)
    # Without identity encoding a server may gzip the body, and Range offsets would then not match
    # the bytes written to the part file.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        # If-Range: a server whose file changed since the part was written sends it whole (200).
        etag = record.get("etag")
        validator = etag if etag and not etag.startswith("W/") else record.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    remaining = max(limits.until - time.monotonic(), 0.001)
    with requests.get(url, headers=headers, stream=True, timeout=min(timeout, remaining)) as response:
        if response.status_code == 416 and have:
            _discard(url, part, f"the server cannot resume it at byte {have} (HTTP 416)")
            return _fetch(url, part, timeout, limits, verifiable)
        if response.status_code in RETRY_STATUSES:
            raise _RetryableStatus(f"HTTP {response.status_code} {response.reason}")
        if response.status_code >= 400:
            raise DownloadError(f"cannot download {_shown(url)}: HTTP {response.status_code} {response.reason}")
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None and length.isdigit() else None
        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        if response.status_code == 206:
            content_range = response.headers.get("Content-Range", "")
            if not have:
                raise DownloadError(
                    f"cannot download {_shown(url)}: the server sent part of the file (HTTP 206, Content-Range"
                    f" {content_range!r}) when asked for all of it"
                )
            match = _CONTENT_RANGE.fullmatch(content_range.strip())
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            etag = response.headers.get("ETag")
            consistent = (
                match is not None
                and int(match.group(1)) == have
                and (total is None or record.get("size") in (None, total))
                and (etag is None or record.get("etag") in (None, etag))
            )
            if not consistent:
                _discard(
                    url, part, f"the server resumed with Content-Range {content_range!r} when asked for bytes {have}-"
                )
                return _fetch(url, part, timeout, limits, verifiable)
            expected = int(match.group(2)) - have + 1
            mode = "ab"
        else:
            if have:
                log.info(
                    "%s: the server sent the whole file (changed, or Range not supported); downloading from the start",
                    _shown(url),
                )
            if expected is None and not chunked and not verifiable:
                raise DownloadError(
                    f"cannot download {_shown(url)}: the server sent no Content-Length, so a cut-off transfer "
                    "cannot be told from a complete one; give its SHA-256 (or allow_unverified=True)"
                )
            # Written before the body, so a part on disk always names its source; the query of a
            # signed URL (credentials) is left out.
            record = {
                "url": _shown(url),
                "size": expected,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            }
            _record_path(part).write_text(json.dumps(record))
            mode = "wb"
        _receive(response, part, mode, url, limits)
        received = part.stat().st_size - (have if mode == "ab" else 0)
        if expected is not None and received < expected:
            raise _Incomplete(f"connection closed after {received} of {expected} bytes")
        return expected is not None or chunked


def _receive(response: requests.Response, part: Path, mode: str, url: str, limits: _Limits) -> None:
    """Write ``response``'s body to ``part``, enforcing the deadline and the minimum rate."""
    window_start, window_bytes = time.monotonic(), 0
    with open(part, mode) as handle:
        # read1 on the raw stream (whose errors are urllib3's) returns what has arrived instead of
        # waiting for a full chunk, so every byte received before a dropped connection reaches the
        # part file and is not fetched again.
        while chunk := response.raw.read1(CHUNK):
            handle.write(chunk)
            window_bytes += len(chunk)
            now = time.monotonic()
            if now > limits.until:
                handle.flush()
                limits.check(url, part)
            if limits.min_rate and now - window_start >= limits.rate_window:
                rate = window_bytes / (now - window_start)
                if rate < limits.min_rate:
                    raise _TooSlow(
                        f"{rate:.0f} B/s over {now - window_start:.1f} s, below the minimum of {limits.min_rate:g} B/s"
                    )
                window_start, window_bytes = now, 0


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
    files are refused, so nothing is written outside ``target``. Each file is written under a
    temporary name (``<name>.partial``) and renamed only once all its bytes are there, so a member
    cut off by a truncated archive never appears under its final name. An unsafe or cut-off member
    stops the extraction; the members before it stay in ``target``.

    Raises:
        DownloadError: The archive is unreadable, truncated or has an unsafe member.
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
                    raise DownloadError(
                        f"{archive}: member {member.name!r} is a link or special file; refusing to extract"
                    )
                if destination != root and root not in destination.parents:
                    raise DownloadError(
                        f"{archive}: member {member.name!r} would be written outside {target}; refusing to extract"
                    )
                # The "data" filter repeats these checks inside tarfile and clears permission bits
                # that would make files executable or writable by others.
                safe = tarfile.data_filter(member, str(root))
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                _extract_file(tar, member, safe, destination, archive)
                files.append(target / member.name)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadError(f"{archive}: cannot extract ({error})") from None
    return files


def _extract_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, safe: tarfile.TarInfo, destination: Path, archive: Path
) -> None:
    """Write ``member``'s bytes to ``destination`` through a temporary file renamed on completion."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".partial")
    try:
        source = tar.extractfile(member)
        written = 0
        with open(temporary, "wb") as handle:
            while chunk := source.read(CHUNK):
                handle.write(chunk)
                written += len(chunk)
        if written != member.size:
            raise DownloadError(
                f"{archive}: member {member.name!r} is cut off after {written} of {member.size} bytes; the archive is"
                " incomplete, download it again"
            )
        if safe.mode is not None:
            os.chmod(temporary, safe.mode)
        if safe.mtime is not None:
            os.utime(temporary, (safe.mtime, safe.mtime))
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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

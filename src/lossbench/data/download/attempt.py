"""One attempt of a download: the part file and its record of where its bytes came from, the HTTP request that
resumes or restarts it, and the body received within the deadline and above the minimum rate."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from lossbench.data.download.common import CHUNK, RETRY_STATUSES, DownloadError, _shown

# The downloads' one log, "lossbench.data.download", whichever of their modules writes.
log = logging.getLogger(__package__)


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
    remaining = max(limits.until - time.monotonic(), 0.001)
    with requests.get(url, headers=_headers(have, record), stream=True, timeout=min(timeout, remaining)) as response:
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
            expected = _resumed_length(response, url, part, have, record)
            if expected is None:
                return _fetch(url, part, timeout, limits, verifiable)
            mode = "ab"
        else:
            _start_whole(response, url, part, have, expected, chunked or verifiable)
            mode = "wb"
        _receive(response, part, mode, url, limits)
        received = part.stat().st_size - (have if mode == "ab" else 0)
        if expected is not None and received < expected:
            raise _Incomplete(f"connection closed after {received} of {expected} bytes")
        return expected is not None or chunked


def _headers(have: int, record: dict | None) -> dict[str, str]:
    """The request's headers: identity encoding, and for a part of ``have`` bytes a ``Range`` from there."""
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
    return headers


def _resumed_length(response: requests.Response, url: str, part: Path, have: int, record: dict | None) -> int | None:
    """The bytes a partial answer (HTTP 206) appends to the ``have`` of ``part``; None, the part discarded, where
    its ``Content-Range`` or ``ETag`` does not prove that they belong together."""
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
        _discard(url, part, f"the server resumed with Content-Range {content_range!r} when asked for bytes {have}-")
        return None
    return int(match.group(2)) - have + 1


def _start_whole(
    response: requests.Response, url: str, part: Path, have: int, expected: int | None, checkable: bool
) -> None:
    """Before a whole body (not HTTP 206) of ``expected`` bytes (None: not announced): refuse one of unknown length
    unless chunked framing or a digest can check it (``checkable``), and record where ``part``'s bytes come from."""
    if have:
        log.info(
            "%s: the server sent the whole file (changed, or Range not supported); downloading from the start",
            _shown(url),
        )
    if expected is None and not checkable:
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

"""A whole download: an existing file checked, attempts retried with backoff within the deadline, the complete file
verified and renamed into place; and torchvision's checkpoints, verified by the digest prefix in their names."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

from lossbench.data.download.attempt import (
    _fetch,
    _Incomplete,
    _Limits,
    _record_path,
    _remove_part,
    _RetryableStatus,
    _TooSlow,
)
from lossbench.data.download.common import (
    DEFAULT_DEADLINE,
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW,
    DownloadError,
    _reason,
    _shown,
    check_digest,
)

# The downloads' one log, "lossbench.data.download", whichever of their modules writes.
log = logging.getLogger(__package__)


# Long only by its docstring, which documents the protocol and each of its twelve arguments; the steps are below.
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
    if _kept(dest, url, sha256, validate):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{dest}: cannot create its folder ({error.strerror or error})") from None
    part = dest.with_name(dest.name + ".part")
    hint = f"; {manual_hint}" if manual_hint else ""
    limits = _Limits(time.monotonic() + deadline, deadline, min_rate, rate_window, hint)
    framed = _attempts(url, part, timeout, limits, retries, backoff, sha256 is not None or allow_unverified)
    _install(part, dest, url, sha256, validate, framed)
    return dest


def _kept(dest: Path, url: str, sha256: str | None, validate: Callable[[Path], None] | None) -> bool:
    """Whether ``dest`` exists and passes the checks, so that it is kept without network access; one that fails
    them, or is no file, raises :class:`DownloadError`."""
    if dest.exists() and not dest.is_file():
        raise DownloadError(
            f"{dest}: is a folder or special file, expected the path of the file to download {_shown(url)} to"
        )
    if not dest.is_file():
        return False
    try:
        _verify(dest, dest.name, url, sha256, validate)
    except DownloadError as error:
        # Never deleted here: the file may be the user's own copy.
        raise DownloadError(f"{error}; {dest} exists but fails this check, remove it to download it again") from None
    return True


def _attempts(
    url: str, part: Path, timeout: float, limits: _Limits, retries: int, backoff: float, verifiable: bool
) -> bool:
    """Fetch ``url`` into ``part`` in up to ``retries`` + 1 attempts, pausing ``backoff`` seconds, doubled each time,
    between them; returns whether the body's length was known (see :func:`_fetch`)."""
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
            return _fetch(url, part, timeout, limits, verifiable=verifiable)
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
    raise DownloadError(
        f"cannot download {_shown(url)} after {retries + 1} attempts ({_reason(last_error, url)}){limits.hint}"
    )


def _install(
    part: Path, dest: Path, url: str, sha256: str | None, validate: Callable[[Path], None] | None, framed: bool
) -> None:
    """Verify the complete ``part`` and rename it to ``dest``; a part that fails verification is deleted."""
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


def _verify(path: Path, label: str, url: str, sha256: str | None, validate: Callable[[Path], None] | None) -> None:
    check_digest(path, sha256, _shown(url), label)
    if validate is not None:
        try:
            validate(path)
        except ValueError as error:
            raise DownloadError(f"{label} (from {_shown(url)}): {error}") from None


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

"""Observer sessions of the collection app: which browser may answer as which observer.

A session token is issued once, to the browser that registers (starts) an observer on the start
page, as the cookie ``study_<observer>`` (HttpOnly, so no script reads it; SameSite=Strict, so no
other site's request carries it). No page and no API response ever holds a token, so knowing an
observer's id is not enough to answer as them. The server keeps only the token's SHA-256, in
``<responses>/.sessions/<observer>``, so sessions outlive the server: an observer who reloads, closes
the browser or comes back days later (after restarts) continues in the same browser. Registering an
observer whom another browser holds is refused. The person running the study releases an id for a
new browser (cookies cleared, another computer) by deleting its file in ``.sessions``, which takes
effect at once, as every check reads the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
from pathlib import Path

from lossbench.userstudy.answers import StorageError, sync_folder, write_all

#: The folder of the sessions inside a responses folder; no ``*.jsonl``, so the analysis never reads it.
SESSIONS = ".sessions"
#: How long a browser keeps its session cookie: longer than any study runs.
COOKIE_MAX_AGE_S = 365 * 24 * 3600
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def cookie_name(observer: str) -> str:
    """The session cookie of ``observer``: one per observer, so that observers sharing a browser keep theirs."""
    return f"study_{observer}"


def set_cookie(observer: str, token: str) -> str:
    """The ``Set-Cookie`` value that hands ``token`` to the registering browser."""
    return f"{cookie_name(observer)}={token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """The sessions of a responses folder; thread-safe.

    Args:
        responses: The responses folder; sessions live in its ``.sessions`` folder, created on the first registration.
    """

    def __init__(self, responses: str | Path):
        self.folder = Path(responses) / SESSIONS
        self._lock = threading.Lock()

    def _held(self, observer: str) -> str | None:
        """The digest of ``observer``'s session token; None if no browser holds the observer."""
        path = self.folder / observer
        try:
            text = path.read_bytes().decode("ascii", errors="replace").strip()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageError(path, "session cannot be read", error) from None
        # A file cut off while registering: its browser never got the cookie, so nobody holds the observer.
        return text if _DIGEST.match(text) else None

    def holds(self, observer: str, token: str | None) -> bool:
        """Whether ``token`` (from a cookie; None if absent) is ``observer``'s session.

        Raises:
            StorageError: the session file cannot be read.
        """
        held = self._held(observer)
        return held is not None and token is not None and hmac.compare_digest(held, _digest(token))

    def register(self, observer: str) -> str | None:
        """A new session token for ``observer``, saved durably; None if another browser holds the observer.

        Raises:
            StorageError: the session could not be saved; nothing of it is left on disk.
        """
        with self._lock:
            if self._held(observer) is not None:
                return None
            token = secrets.token_urlsafe(32)
            path = self.folder / observer
            try:
                self.folder.mkdir(exist_ok=True)
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as error:
                raise StorageError(path, "session not saved", error) from None
            try:
                write_all(descriptor, (_digest(token) + "\n").encode())
                os.fsync(descriptor)
                sync_folder(self.folder)
            except OSError as error:
                with contextlib.suppress(OSError):
                    path.unlink()
                    self.folder.rmdir()  # refused, as it should be, while other sessions are in it
                raise StorageError(path, "session not saved", error) from None
            finally:
                os.close(descriptor)
            return token

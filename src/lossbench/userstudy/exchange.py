"""One HTTP exchange of the collection app, below its routes: the request read within its deadlines, the checks the
routes make (``Host``, observer, session), and the replies (one-line JSON for the scripts, pages for a person) with
the security headers every response carries."""

from __future__ import annotations

import io
import json
import logging
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from urllib.parse import urlsplit

from lossbench.userstudy.answers import StorageError
from lossbench.userstudy.sessions import cookie_name
from lossbench.userstudy.study import _PAGES, render

# The app's one log, "lossbench.userstudy.server", whichever of its modules writes.
LOG = logging.getLogger("lossbench.userstudy.server")

#: Characters of an unknown observer id that its page repeats.
_SHOWN_ID = 64
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action"
        " 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    # Not no-referrer: under it a browser sends "Origin: null" with the start page's form, which the origin check
    # refuses.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class _DeadlineReader(io.RawIOBase):
    """A connection's input where no read waits longer than the idle timeout or past the request's deadline."""

    def __init__(self, handler: Exchange):
        super().__init__()
        self.handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.handler.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"request not complete within {self.handler.server.request_timeout} s")
        self.handler.connection.settimeout(min(self.handler.server.idle_timeout, remaining))
        return self.handler.connection.recv_into(buffer)


class Exchange(BaseHTTPRequestHandler):
    """The plumbing of :class:`~lossbench.userstudy.routes.Handler`, the app's request handler; ``server`` is the
    :class:`~lossbench.userstudy.server.StudyServer`."""

    server_version = "lossbench-userstudy"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain socket file, replaced by one that keeps the timeouts
        self.rfile = io.BufferedReader(_DeadlineReader(self))
        self.deadline = time.monotonic()

    def handle_one_request(self) -> None:
        # The deadline counts from the previous response (or the connection), so an idle keep-alive
        # connection, a half-open one and a client dribbling its request all end in bounded time.
        self.deadline = time.monotonic() + self.server.request_timeout
        super().handle_one_request()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        LOG.info("%s %s", self.address_string(), format % args)

    def end_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.connection.settimeout(self.server.idle_timeout)  # for writing the response
        super().end_headers()

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _static(self, name: str) -> bytes:
        return resources.files("lossbench.userstudy").joinpath("static", name).read_bytes()

    def _page(self, status: HTTPStatus, title: str, message: str) -> None:
        """A page for a person: ``title`` and ``message``, and a link to the start page."""
        self._send(status, render(_PAGES["notice"], title=title, message=message), "text/html; charset=utf-8")

    def _observer(self, observer: str, page: bool = False) -> str | None:
        """``observer`` if registered, else None after answering 404: a page for a person, JSON for the app's
        scripts."""
        if observer not in self.server.study.plans:
            if page:
                shown = observer if len(observer) <= _SHOWN_ID else observer[:_SHOWN_ID] + "…"
                self._send(HTTPStatus.NOT_FOUND, render(_PAGES["unknown"], observer=shown), "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "unknown observer"})
            return None
        return observer

    def _cookie(self, name: str) -> str | None:
        """The value of the request's cookie ``name``; None without one."""
        for header in self.headers.get_all("Cookie", []):
            for pair in header.split(";"):
                key, _, value = pair.strip().partition("=")
                if key == name:
                    return value
        return None

    def _storage_failed(self, error: StorageError, what: str, page: bool = False) -> None:
        """Log ``error`` in one line (it names the file) and tell the observer that ``what`` failed and may be tried
        again."""
        LOG.error("%s", error)
        status = HTTPStatus.INSUFFICIENT_STORAGE if error.full else HTTPStatus.SERVICE_UNAVAILABLE
        reason = "the study's disk is full" if error.full else "the study's files cannot be written or read"
        message = f"{what}: {reason}. Please tell the person running the study, then try again."
        if page:
            self._page(status, "Not saved", message)
        else:
            self._json(status, {"error": message})

    def _has_session(self, observer: str, page: bool = False) -> bool:
        """Whether this browser holds ``observer``'s session (:mod:`lossbench.userstudy.sessions`); answers 403 if
        not."""
        try:
            if self.server.study.sessions.holds(observer, self._cookie(cookie_name(observer))):
                return True
        except StorageError as error:
            self._storage_failed(error, "Your session could not be checked", page)
            return False
        if page:
            self._page(
                HTTPStatus.FORBIDDEN,
                "Not started in this browser",
                f"This browser has not started the study as observer {observer}. Enter your id on the start page to"
                " start or to continue.",
            )
        else:
            self._json(
                HTTPStatus.FORBIDDEN,
                {
                    "error": (
                        f"this browser has not started the study as observer {observer}: enter your id on the start"
                        " page to continue"
                    )
                },
            )
        return False

    def _host_allowed(self) -> bool:
        """Whether the request names this server in ``Host``; answers 421 if not."""
        host = self.headers.get("Host", "")
        name = (urlsplit(f"//{host}").hostname or "") if host else ""
        local = self.connection.getsockname()[0].lower()
        if name and (name in self.server.host_names or name == local):
            return True
        self._json(
            HTTPStatus.MISDIRECTED_REQUEST,
            {
                "error": (
                    f"Host {host!r} is not a name of this server (serve with --allowed-host {name or 'NAME'} if it is)"
                )
            },
        )
        return False

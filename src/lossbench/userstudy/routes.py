"""The routes of the collection app (see :mod:`lossbench.userstudy.server` for what each does)."""

from __future__ import annotations

import functools
import json
import logging
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

from lossbench.userstudy.answers import StorageError
from lossbench.userstudy.exchange import Exchange
from lossbench.userstudy.sessions import cookie_name, set_cookie
from lossbench.userstudy.study import _PAGES, render

# The app's one log, "lossbench.userstudy.server", whichever of its modules writes.
LOG = logging.getLogger("lossbench.userstudy.server")

MAX_BODY = 1024
_ASSETS = {"study.js": "text/javascript; charset=utf-8", "study.css": "text/css; charset=utf-8"}


class Handler(Exchange):
    """Request handler of the collection app; ``server`` is the :class:`~lossbench.userstudy.server.StudyServer`."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._host_allowed():
            return
        path = urlsplit(self.path).path
        parts = path.split("/")
        if path == "/":
            self._send(HTTPStatus.OK, self.server.study.start_page(), "text/html; charset=utf-8")
        elif len(parts) == 3 and parts[1] == "study":
            observer = self._observer(unquote(parts[2]), page=True)
            if observer is not None and self._has_session(observer, page=True):
                self._send(HTTPStatus.OK, render(_PAGES["study"]), "text/html; charset=utf-8")
        elif len(parts) == 3 and parts[1] == "static" and parts[2] in _ASSETS:
            self._send(HTTPStatus.OK, self._static(parts[2]), _ASSETS[parts[2]])
        elif len(parts) == 4 and parts[1] == "api" and parts[3] == "state":
            observer = self._observer(unquote(parts[2]))
            if observer is not None and self._has_session(observer):
                try:
                    state = self.server.study.state(observer)
                except StorageError as error:
                    self._storage_failed(error, "Your progress could not be read")
                    return
                self._json(HTTPStatus.OK, state)
        elif path.startswith("/stimuli/"):
            try:
                body = self.server.study.read_stimulus(unquote(path.removeprefix("/stimuli/")))
            except LookupError as error:
                LOG.warning("GET %s refused: %s", path, error.args[0])
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            else:
                self._send(HTTPStatus.OK, body, "image/png")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path).path.split("/")
        if parts == ["", "study"]:
            respond = self._register
        elif len(parts) == 4 and parts[1] == "api" and parts[3] == "answer":
            respond = functools.partial(self._answer, unquote(parts[2]))
        else:
            self.close_connection = True  # the body is not read, so the connection cannot be reused
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        if not 0 < length <= MAX_BODY:
            self.close_connection = True
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"body must be 1–{MAX_BODY} bytes"})
            return
        body = self.rfile.read(length)
        if not self._host_allowed():
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            self._json(HTTPStatus.FORBIDDEN, {"error": f"cross-origin request from {origin!r} refused"})
            return
        respond(body)

    def _register(self, body: bytes) -> None:
        """``POST /study``: the start page's form registers its observer to this browser (see the module's
        docstring)."""
        if self.headers.get_content_type() != "application/x-www-form-urlencoded":
            self._page(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Not a registration", "Enter your observer id on the start page."
            )
            return
        try:
            fields = parse_qs(body.decode(), strict_parsing=True, max_num_fields=1)
        except ValueError:  # not UTF-8, not a form, or more than one field
            fields = {}
        if len(fields.get("observer", [])) != 1:
            self._page(HTTPStatus.BAD_REQUEST, "Not a registration", "Enter your observer id on the start page.")
            return
        observer = self._observer(fields["observer"][0], page=True)
        if observer is None:
            return
        sessions = self.server.study.sessions
        try:
            if sessions.holds(observer, self._cookie(cookie_name(observer))):
                self._see_other(observer)  # the browser that holds the observer: continue
                return
            token = sessions.register(observer)
        except StorageError as error:
            self._storage_failed(error, "You could not be registered", page=True)
            return
        if token is None:
            LOG.warning(
                "observer %s: registration from another browser refused (delete %s to release the id)",
                observer,
                sessions.folder / observer,
            )
            self._page(
                HTTPStatus.CONFLICT,
                "Already started in another browser",
                f"Observer {observer} has already started the study in another browser. Continue in that browser; if"
                " you cannot, ask the person running the study to release your id.",
            )
            return
        LOG.info("observer %s registered to a browser", observer)
        self._see_other(observer, set_cookie(observer, token))

    def _see_other(self, observer: str, cookie: str | None = None) -> None:
        """Send the browser on to ``observer``'s study page (a 303, so a reload repeats no POST), with ``cookie`` if
        given."""
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", f"/study/{observer}")  # observer ids need no quoting
        if cookie is not None:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, requested: str, body: bytes) -> None:
        """``POST /api/<observer>/answer``."""
        observer = self._observer(requested)
        if observer is None:
            return
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "Content-Type must be application/json"})
            return
        if not self._has_session(observer):
            return
        try:
            payload = json.loads(body)
        except RecursionError:  # json's answer to nesting deeper than the interpreter's recursion limit
            self._json(HTTPStatus.BAD_REQUEST, {"error": "body nests too deeply"})
            return
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            self._json(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
            return
        if (
            not isinstance(payload, dict)
            or set(payload) != {"trial", "choice"}
            or not isinstance(payload["trial"], str)
            or payload["choice"] not in ("left", "right")
        ):
            self._json(HTTPStatus.BAD_REQUEST, {"error": 'expected {"trial": "<id>", "choice": "left" | "right"}'})
            return
        try:
            status, answer = self.server.study.answer(observer, payload["trial"], payload["choice"])
        except StorageError as error:
            self._storage_failed(error, "Your answer was not saved")
            return
        self._json(status, answer)

"""The collection app: a small HTTP server that shows each observer their trials and records answers.

Routes (``<observer>`` is a registered observer id):

- ``GET /`` — the start page: what observers do, how many comparisons and about how long they
  take, how far to sit from the screen (:mod:`lossbench.userstudy.viewing`), and the form where they
  enter their id; ``GET /static/<file>`` — the pages' scripts and styles.
- ``POST /study`` (the start page's form, ``observer=<id>``) — registers the observer to this
  browser: the first registration gets the observer's session cookie and is sent on (303) to their
  study page; a registration from the browser that holds the observer is sent on as well; one from
  any other browser is refused with a page saying so (409). An unknown id gets a page saying so (404).
- ``GET /study/<observer>`` — the study page; it holds no token, and a browser without the
  observer's session gets a page sending it to the start page (403).
- ``GET /api/<observer>/state`` — progress and the current trial (its flicker images and sides).
- ``POST /api/<observer>/answer`` with JSON ``{"trial": id, "choice": "left" | "right"}`` — records
  the answer to the current trial durably (:mod:`lossbench.userstudy.responses`), then returns the
  new state. A replayed or out-of-order trial is refused with 409; a body that is not such an object
  (not JSON, another JSON value, nested deeper than the interpreter parses, over :data:`MAX_BODY`
  bytes) with 400; unknown observers and trials with 404. An answer that cannot be saved (a full
  disk or quota: 507; a read-only or failing file system: 503) leaves nothing on disk, is logged in
  one line naming the file, and the page shows the error and offers the same trial again.
- ``GET /stimuli/<path>`` — only the image files the manifest lists, and only where they resolve
  (symlinks included) to a regular file inside the stimuli folder; nothing else on disk is reachable.

The errors of these routes are one-line JSON ``{"error": ...}`` for the scripts, or a page for a person.

Sessions (:mod:`lossbench.userstudy.sessions`). The server issues an observer's session token only
to the browser that registers the observer, as an HttpOnly, SameSite=Strict cookie; ``GET
/study/<observer>`` and every other response carry none, so anyone who knows an id still cannot
answer, or read the state, as that observer (403). The session is kept in the responses folder, so
an observer who reloads, closes the browser or comes back after a server restart continues, in the
same browser, at their first unanswered trial. The person running the study releases an id held by a
lost browser by deleting ``<responses>/.sessions/<observer>``.

Defences against other web pages an observer has open: the session cookie is SameSite=Strict, so
no cross-site request carries it; every answer needs ``Content-Type: application/json`` (415
otherwise), which a cross-site page cannot send without a CORS preflight this server never grants; a
browser's ``Origin`` must be this server's own (403), for registrations too; and the ``Host`` must be
one of the server's names (421), so a DNS-rebound name cannot reach it. Every response forbids
framing and carries a Content-Security-Policy that allows only the app's own scripts, styles and
images.

Every read waits at most ``idle_timeout`` and every request must arrive within ``request_timeout``,
so idle, half-open and slow clients are dropped; at most ``max_connections`` are served at once.
"""

from __future__ import annotations

import functools
import html
import io
import json
import logging
import math
import os
import socket
import stat
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from lossbench.userstudy.responses import FolderLock, ObserverFile, StorageError, check_observer
from lossbench.userstudy.sessions import Sessions, cookie_name, set_cookie
from lossbench.userstudy.stimuli import MANIFEST, load_manifest, plan
from lossbench.userstudy.viewing import instructions, recorded

LOG = logging.getLogger(__name__)
MAX_BODY = 1024
#: Time per comparison that the start page's duration assumes: a few flicker cycles and a choice.
SECONDS_PER_COMPARISON = 10
#: Characters of an unknown observer id that its page repeats.
_SHOWN_ID = 64
_PAGES = {"/": "index.html", "study": "study.html", "unknown": "unknown.html", "notice": "notice.html"}
_ASSETS = {"study.js": "text/javascript; charset=utf-8", "study.css": "text/css; charset=utf-8"}
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
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"


def render(name: str, **values: str) -> bytes:
    """The page ``name`` of the app's static files with each ``{{key}}`` replaced by ``values[key]``, HTML-escaped."""
    page = resources.files("lossbench.userstudy").joinpath("static", name).read_text(encoding="utf-8")
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", html.escape(value))
    return page.encode()


class Study:
    """Everything the handlers share: the manifest, the observers' plans and their answer files.

    Args:
        stimuli: Folder of the stimuli and their manifest.
        responses: Folder of the observers' answer files.
        observers: The registered observer ids.
        seed: Seed of the observers' trial orders and sides.
        viewing: Viewing conditions to tell observers (:func:`lossbench.userstudy.viewing.conditions`);
            by default the manifest's.

    Raises:
        ValueError: a bad manifest, observer id or listed image, no viewing conditions, or a
            responses folder that cannot be made.
    """

    def __init__(
        self,
        stimuli: str | Path,
        responses: str | Path,
        observers: list[str],
        seed: int = 0,
        viewing: dict | None = None,
    ):
        self.stimuli = Path(stimuli).resolve()
        self.manifest = load_manifest(self.stimuli / MANIFEST)
        if viewing is None and "viewing" not in self.manifest:
            raise ValueError(
                f"{self.stimuli / MANIFEST}: no viewing conditions (stimuli made without evaluation.flip): give them,"
                " e.g. serve with --ppd P or --distance-m D --monitor-width-m W --monitor-pixels N"
            )
        self.viewing = recorded(
            self.manifest["viewing"] if viewing is None else viewing,
            str(self.stimuli / MANIFEST) if viewing is None else "viewing",
        )
        if not observers:
            raise ValueError("no observers registered: pass --observer ID (repeatable) or --observers-file")
        self.plans = {check_observer(observer): plan(self.manifest, observer, seed) for observer in observers}
        self.trial_ids = {trial["id"] for trial in self.manifest["trials"]}
        # URL paths under /stimuli/: exactly the images of the manifest.
        self.images = {
            relative
            for entry in self.manifest["images"].values()
            for relative in [entry["reference"], *entry["outputs"].values()]
        }
        for relative in sorted(self.images):
            try:
                self.stimulus(relative)
            except LookupError as error:
                raise ValueError(f"{error.args[0]} (listed in {self.stimuli / MANIFEST})") from None
        self._files_lock = threading.Lock()
        self._observer_files: dict[str, ObserverFile] = {}
        self.responses = Path(responses)
        try:
            self.responses.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"{self.responses}: cannot make the responses folder ({error.strerror})") from None
        self.sessions = Sessions(self.responses)

    def start_page(self) -> bytes:
        """The start page: the task, the number of comparisons and their duration, and how far to sit."""
        comparisons = len(self.manifest["trials"])
        minutes = max(1, math.ceil(comparisons * SECONDS_PER_COMPARISON / 60))
        distance, reason = instructions(self.viewing)
        return render(
            _PAGES["/"],
            comparisons=f"{comparisons} comparison{'s' if comparisons != 1 else ''}",
            minutes=f"{minutes} minute{'s' if minutes != 1 else ''}",
            seconds=str(SECONDS_PER_COMPARISON),
            distance=distance,
            viewing=reason,
        )

    def stimulus(self, relative: str) -> Path:
        """The resolved file of the manifest image at ``relative`` (a path inside the stimuli folder).

        Raises:
            LookupError: with a one-line reason, if the manifest lists no such image, or its file is
                missing, not a regular file, or (through a symlink) outside the stimuli folder.
        """
        if relative not in self.images:
            raise LookupError(f"{relative!r} is not an image of the manifest")
        listed = self.stimuli / relative
        try:
            path = listed.resolve(strict=True)
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
            raise LookupError(f"{listed}: {getattr(error, 'strerror', None) or error}") from None
        if not path.is_relative_to(self.stimuli):
            raise LookupError(f"{listed}: leads to {path}, outside the stimuli folder {self.stimuli}")
        if not path.is_file():
            raise LookupError(f"{listed}: not a regular file")
        return path

    def read_stimulus(self, relative: str) -> bytes:
        """The bytes of the manifest image at ``relative``.

        Raises:
            LookupError: as :meth:`stimulus`, also when the file changes between the check and the read.
        """
        path = self.stimulus(relative)
        try:
            # No symlink and no FIFO can have taken the checked file's place since.
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(descriptor, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise LookupError(f"{path}: not a regular file")
                return handle.read()
        except OSError as error:
            raise LookupError(f"{path}: {error.strerror}") from None

    def observer_file(self, observer: str) -> ObserverFile:
        """The answer file of ``observer``, read on first use.

        Raises:
            StorageError: it cannot be read; the next call tries again.
        """
        with self._files_lock:
            if observer not in self._observer_files:
                self._observer_files[observer] = ObserverFile(self.responses / f"{observer}.jsonl", observer)
            return self._observer_files[observer]

    def state(self, observer: str) -> dict:
        """Progress of ``observer`` and their current trial (None when done).

        Raises:
            StorageError: their answer file cannot be read.
        """
        answered = self.observer_file(observer).answered
        trials = self.plans[observer]
        remaining = [trial for trial in trials if trial.id not in answered]
        state = {
            "observer": observer,
            "done": len(trials) - len(remaining),
            "total": len(trials),
            "flicker_ms": self.manifest["flicker_ms"],
            "trial": None,
        }
        if remaining:
            trial = remaining[0]
            entry = self.manifest["images"][trial.image]
            state["trial"] = {
                "id": trial.id,
                "reference": f"/stimuli/{entry['reference']}",
                "left": f"/stimuli/{entry['outputs'][trial.left]}",
                "right": f"/stimuli/{entry['outputs'][trial.right]}",
                "width": entry["width"],
                "height": entry["height"],
            }
        return state

    def answer(self, observer: str, trial_id: str, choice: str) -> tuple[HTTPStatus, dict]:
        """Record ``choice`` for ``trial_id`` if it is the observer's current trial; the status and the new state or an
        error.

        Raises:
            StorageError: the answer was not saved (nothing of it is on disk), or the answer file cannot be read.
        """
        if trial_id not in self.trial_ids:
            return HTTPStatus.NOT_FOUND, {"error": f"unknown trial {trial_id!r}"}
        log = self.observer_file(observer)
        with log.lock:
            if trial_id in log.answered:
                return HTTPStatus.CONFLICT, {"error": f"trial {trial_id} is already answered"}
            current = next(trial for trial in self.plans[observer] if trial.id not in log.answered)
            if current.id != trial_id:
                return HTTPStatus.CONFLICT, {"error": f"trial {trial_id} is not the current trial ({current.id})"}
            chosen, other = (current.left, current.right) if choice == "left" else (current.right, current.left)
            position = len(log.answered)
            log.append(
                {
                    "observer": observer,
                    "trial": trial_id,
                    "image": current.image,
                    "left": current.left,
                    "right": current.right,
                    "chosen": chosen,
                    "other": other,
                    "position": position,
                    "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                }
            )
        return HTTPStatus.OK, self.state(observer)


class _DeadlineReader(io.RawIOBase):
    """A connection's input where no read waits longer than the idle timeout or past the request's deadline."""

    def __init__(self, handler: Handler):
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


class Handler(BaseHTTPRequestHandler):
    """Request handler; ``server`` is the :class:`StudyServer`."""

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


class StudyServer(ThreadingHTTPServer):
    """A threading HTTP server holding a :class:`Study` and the lock of its responses folder until closed.

    Args:
        study: The study to serve.
        host: Address to listen on.
        port: Port to listen on (0: a free one).
        allowed_hosts: Further names of this server that requests may carry in ``Host`` (besides
            ``host``, ``localhost``, the machine's host name and the address a client connected to).
        idle_timeout: Longest wait, in seconds, for any read from or write to a client.
        request_timeout: Longest time, in seconds, a connection may take to deliver a whole request
            after the previous response.
        max_connections: Connections served at once; more are answered 503 and closed.

    Raises:
        ValueError: if another server holds the responses folder, or no answer can be saved there
            (read-only, full; :class:`~lossbench.userstudy.responses.FolderLock`).
        OSError: if it cannot listen on ``host:port``.
    """

    daemon_threads = True
    # The default listen backlog of 5 resets connections when a room of observers submits at once.
    request_queue_size = 128

    def __init__(
        self,
        study: Study,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        allowed_hosts: tuple[str, ...] = (),
        idle_timeout: float = 10.0,
        request_timeout: float = 30.0,
        max_connections: int = 256,
    ):
        self.study = study
        self.host_names = {name.lower() for name in (host, "localhost", socket.gethostname(), *allowed_hosts)}
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = FolderLock(study.responses)
        try:
            super().__init__((host, port), Handler)
        except BaseException:
            self._lock.close()
            raise

    def process_request(self, request: socket.socket, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            LOG.warning("%s refused: already serving the maximum of connections", client_address[0])
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._lock.close()

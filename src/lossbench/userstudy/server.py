"""The collection app: a small HTTP server that shows each observer their trials and records answers.

Routes (``<observer>`` is a registered observer id):

- ``GET /`` — the start page: what observers do, how many comparisons and about how long they
  take, how far to sit from the screen (:mod:`lossbench.userstudy.viewing`), and where they enter
  their id; ``GET /study/<observer>`` — the study page, which carries the observer's session token
  (an unknown id gets a page saying so, with status 404); ``GET /static/<file>`` — the pages'
  scripts and styles.
- ``GET /api/<observer>/state`` — progress and the current trial (its flicker images and sides).
- ``POST /api/<observer>/answer`` with JSON ``{"trial": id, "choice": "left" | "right"}`` — records
  the answer to the current trial durably (:mod:`lossbench.userstudy.responses`), then returns the
  new state. A replayed or out-of-order trial is refused with 409, malformed input with 400,
  unknown observers and trials with 404.
- ``GET /stimuli/<path>`` — only the image files the manifest lists, and only where they resolve
  (symlinks included) to a regular file inside the stimuli folder; nothing else on disk is reachable.

Defences against other web pages an observer has open: every answer needs ``Content-Type:
application/json`` (415 otherwise) and the ``X-Study-Token`` of the study page (403 otherwise), which
a cross-site page can neither read nor send without a CORS preflight this server never grants; a
browser's ``Origin`` must be this server's own (403); and the ``Host`` must be one of the server's
names (421), so a DNS-rebound name cannot reach it. Every response forbids framing and carries a
Content-Security-Policy that allows only the app's own scripts, styles and images.

Every read waits at most ``idle_timeout`` and every request must arrive within ``request_timeout``,
so idle, half-open and slow clients are dropped; at most ``max_connections`` are served at once.

An observer who reloads the page or comes back later continues at their first unanswered trial.
"""

from __future__ import annotations

import hmac
import html
import io
import json
import logging
import math
import os
import secrets
import socket
import stat
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lossbench.userstudy.responses import FolderLock, ObserverFile, check_observer
from lossbench.userstudy.stimuli import MANIFEST, load_manifest, plan
from lossbench.userstudy.viewing import instructions, recorded

LOG = logging.getLogger(__name__)
MAX_BODY = 1024
TOKEN_HEADER = "X-Study-Token"
#: Time per comparison that the start page's duration assumes: a few flicker cycles and a choice.
SECONDS_PER_COMPARISON = 10
#: Characters of an unknown observer id that its page repeats.
_SHOWN_ID = 64
_PAGES = {"/": "index.html", "study": "study.html", "unknown": "unknown.html"}
_ASSETS = {"index.js": "text/javascript; charset=utf-8", "study.js": "text/javascript; charset=utf-8", "study.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
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
        ValueError: a bad manifest, observer id or listed image, or no viewing conditions.
    """

    def __init__(self, stimuli: str | Path, responses: str | Path, observers: list[str], seed: int = 0, viewing: dict | None = None):
        self.stimuli = Path(stimuli).resolve()
        self.manifest = load_manifest(self.stimuli / MANIFEST)
        if viewing is None and "viewing" not in self.manifest:
            raise ValueError(f"{self.stimuli / MANIFEST}: no viewing conditions (stimuli made without evaluation.flip): give them, e.g. serve with --ppd P or --distance-m D --monitor-width-m W --monitor-pixels N")
        self.viewing = recorded(self.manifest["viewing"] if viewing is None else viewing, str(self.stimuli / MANIFEST) if viewing is None else "viewing")
        if not observers:
            raise ValueError("no observers registered: pass --observer ID (repeatable) or --observers-file")
        self.plans = {check_observer(observer): plan(self.manifest, observer, seed) for observer in observers}
        self.trial_ids = {trial["id"] for trial in self.manifest["trials"]}
        # URL paths under /stimuli/: exactly the images of the manifest.
        self.images = {relative for entry in self.manifest["images"].values() for relative in [entry["reference"], *entry["outputs"].values()]}
        for relative in sorted(self.images):
            try:
                self.stimulus(relative)
            except LookupError as error:
                raise ValueError(f"{error.args[0]} (listed in {self.stimuli / MANIFEST})") from None
        self._secret = secrets.token_bytes(32)
        self._files_lock = threading.Lock()
        self._observer_files: dict[str, ObserverFile] = {}
        self.responses = Path(responses)
        self.responses.mkdir(parents=True, exist_ok=True)

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

    def token(self, observer: str) -> str:
        """The session token of ``observer``'s study page; new with every server start."""
        return hmac.new(self._secret, observer.encode(), "sha256").hexdigest()

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
        with self._files_lock:
            if observer not in self._observer_files:
                self._observer_files[observer] = ObserverFile(self.responses / f"{observer}.jsonl")
            return self._observer_files[observer]

    def state(self, observer: str) -> dict:
        answered = self.observer_file(observer).answered
        trials = self.plans[observer]
        remaining = [trial for trial in trials if trial.id not in answered]
        state = {"observer": observer, "done": len(trials) - len(remaining), "total": len(trials), "flicker_ms": self.manifest["flicker_ms"], "trial": None}
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
        """Record ``choice`` for ``trial_id`` if it is the observer's current trial."""
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
            log.append({
                "observer": observer,
                "trial": trial_id,
                "image": current.image,
                "left": current.left,
                "right": current.right,
                "chosen": chosen,
                "other": other,
                "position": position,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            })
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

    def _observer(self, part: str, page: bool = False) -> str | None:
        """The registered observer that ``part`` names, else None after answering 404: a page for a person, JSON for the app's scripts."""
        observer = unquote(part)
        if observer not in self.server.study.plans:
            if page:
                shown = observer if len(observer) <= _SHOWN_ID else observer[:_SHOWN_ID] + "…"
                self._send(HTTPStatus.NOT_FOUND, render(_PAGES["unknown"], observer=shown), "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "unknown observer"})
            return None
        return observer

    def _host_allowed(self) -> bool:
        """Whether the request names this server in ``Host``; answers 421 if not."""
        host = self.headers.get("Host", "")
        name = (urlsplit(f"//{host}").hostname or "") if host else ""
        local = self.connection.getsockname()[0].lower()
        if name and (name in self.server.host_names or name == local):
            return True
        self._json(HTTPStatus.MISDIRECTED_REQUEST, {"error": f"Host {host!r} is not a name of this server (serve with --allowed-host {name or 'NAME'} if it is)"})
        return False

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._host_allowed():
            return
        path = urlsplit(self.path).path
        parts = path.split("/")
        if path == "/":
            self._send(HTTPStatus.OK, self.server.study.start_page(), "text/html; charset=utf-8")
        elif len(parts) == 3 and parts[1] == "study":
            observer = self._observer(parts[2], page=True)
            if observer is not None:
                self._send(HTTPStatus.OK, render(_PAGES["study"], token=self.server.study.token(observer)), "text/html; charset=utf-8")
        elif len(parts) == 3 and parts[1] == "static" and parts[2] in _ASSETS:
            self._send(HTTPStatus.OK, self._static(parts[2]), _ASSETS[parts[2]])
        elif len(parts) == 4 and parts[1] == "api" and parts[3] == "state":
            observer = self._observer(parts[2])
            if observer is not None:
                self._json(HTTPStatus.OK, self.server.study.state(observer))
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
        if not (len(parts) == 4 and parts[1] == "api" and parts[3] == "answer"):
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
        observer = self._observer(parts[2])
        if observer is None:
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            self._json(HTTPStatus.FORBIDDEN, {"error": f"cross-origin answer from {origin!r} refused"})
            return
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "Content-Type must be application/json"})
            return
        if not hmac.compare_digest(self.headers.get(TOKEN_HEADER, "").encode(), self.server.study.token(observer).encode()):
            self._json(HTTPStatus.FORBIDDEN, {"error": "missing or expired session token: please reload the study page"})
            return
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
            return
        if not isinstance(payload, dict) or set(payload) != {"trial", "choice"} or not isinstance(payload["trial"], str) or payload["choice"] not in ("left", "right"):
            self._json(HTTPStatus.BAD_REQUEST, {"error": 'expected {"trial": "<id>", "choice": "left" | "right"}'})
            return
        self._json(*self.server.study.answer(observer, payload["trial"], payload["choice"]))


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
        ValueError: if another server holds the responses folder
            (:class:`~lossbench.userstudy.responses.FolderLock`).
        OSError: if it cannot listen on ``host:port``.
    """

    daemon_threads = True
    # The default listen backlog of 5 resets connections when a room of observers submits at once.
    request_queue_size = 128

    def __init__(self, study: Study, host: str = "127.0.0.1", port: int = 8000, *, allowed_hosts: tuple[str, ...] = (), idle_timeout: float = 10.0, request_timeout: float = 30.0, max_connections: int = 256):
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

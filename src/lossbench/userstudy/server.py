"""The collection app: a small HTTP server that shows each observer their trials and records answers.

Routes (``<observer>`` is a registered observer id):

- ``GET /`` — where observers enter their id; ``GET /study/<observer>`` — the study page.
- ``GET /api/<observer>/state`` — progress and the current trial (its flicker images and sides).
- ``POST /api/<observer>/answer`` with JSON ``{"trial": id, "choice": "left" | "right"}`` — records
  the answer to the current trial durably (:mod:`lossbench.userstudy.responses`), then returns the
  new state. A replayed or out-of-order trial is refused with 409, malformed input with 400,
  unknown observers and trials with 404.
- ``GET /stimuli/<path>`` — only the image files the manifest lists; nothing else on disk is reachable.

An observer who reloads the page or comes back later continues at their first unanswered trial.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lossbench.userstudy.responses import ObserverFile, check_observer
from lossbench.userstudy.stimuli import MANIFEST, load_manifest, plan

LOG = logging.getLogger(__name__)
MAX_BODY = 1024
_PAGES = {"/": "index.html", "study": "study.html"}


class Study:
    """Everything the handlers share: the manifest, the observers' plans and their answer files."""

    def __init__(self, stimuli: str | Path, responses: str | Path, observers: list[str], seed: int = 0):
        self.stimuli = Path(stimuli).resolve()
        self.manifest = load_manifest(self.stimuli / MANIFEST)
        self.responses = Path(responses)
        self.responses.mkdir(parents=True, exist_ok=True)
        if not observers:
            raise ValueError("no observers registered: pass --observer ID (repeatable) or --observers-file")
        self.plans = {check_observer(observer): plan(self.manifest, observer, seed) for observer in observers}
        self.trial_ids = {trial["id"] for trial in self.manifest["trials"]}
        # URL path → file, for exactly the images of the manifest.
        self.files = {}
        for entry in self.manifest["images"].values():
            for relative in [entry["reference"], *entry["outputs"].values()]:
                self.files[relative] = self.stimuli / relative
        self._files_lock = threading.Lock()
        self._observer_files: dict[str, ObserverFile] = {}

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


class Handler(BaseHTTPRequestHandler):
    """Request handler; ``server.study`` is the shared :class:`Study`."""

    server_version = "lossbench-userstudy"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        LOG.info("%s %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _page(self, name: str) -> None:
        body = resources.files("lossbench.userstudy").joinpath("static", name).read_bytes()
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")

    def _observer(self, part: str) -> str | None:
        observer = unquote(part)
        if observer not in self.server.study.plans:
            self._json(HTTPStatus.NOT_FOUND, {"error": "unknown observer"})
            return None
        return observer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        parts = path.split("/")
        if path == "/":
            self._page(_PAGES["/"])
        elif len(parts) == 3 and parts[1] == "study":
            if self._observer(parts[2]) is not None:
                self._page(_PAGES["study"])
        elif len(parts) == 4 and parts[1] == "api" and parts[3] == "state":
            observer = self._observer(parts[2])
            if observer is not None:
                self._json(HTTPStatus.OK, self.server.study.state(observer))
        elif path.startswith("/stimuli/"):
            file = self.server.study.files.get(unquote(path.removeprefix("/stimuli/")))
            if file is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            else:
                self._send(HTTPStatus.OK, file.read_bytes(), "image/png")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path).path.split("/")
        if not (len(parts) == 4 and parts[1] == "api" and parts[3] == "answer"):
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        if not 0 < length <= MAX_BODY:
            self.close_connection = True  # the body is not read, so the connection cannot be reused
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"body must be 1–{MAX_BODY} bytes"})
            return
        body = self.rfile.read(length)
        observer = self._observer(parts[2])
        if observer is None:
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
    """A threading HTTP server holding a :class:`Study`."""

    daemon_threads = True
    # The default listen backlog of 5 resets connections when a room of observers submits at once.
    request_queue_size = 128

    def __init__(self, study: Study, host: str = "127.0.0.1", port: int = 8000):
        self.study = study
        super().__init__((host, port), Handler)

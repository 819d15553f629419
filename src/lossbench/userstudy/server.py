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
- ``GET /api/<observer>/state`` — progress and the current trial (its flicker images and sides); while the
  observer practises (``practice``: which of how many), a practice trial, whose answer is kept apart from the
  answers and never counted (:class:`~lossbench.userstudy.study.Study`'s ``practice_trials``).
- ``POST /api/<observer>/answer`` with JSON ``{"trial": id, "choice": "left" | "right"}`` — records
  the answer to the current trial durably (:mod:`lossbench.userstudy.answers`), then returns the
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

The app's modules: :mod:`lossbench.userstudy.study` (the study's state), :mod:`lossbench.userstudy.routes`
(the routes), :mod:`lossbench.userstudy.exchange` (what every exchange does: deadlines, checks, replies) and
:mod:`lossbench.userstudy.sessions` (which browser holds which observer); this one is the server.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import ThreadingHTTPServer

from lossbench.userstudy.answers import FolderLock
from lossbench.userstudy.routes import MAX_BODY, Handler
from lossbench.userstudy.study import SECONDS_PER_COMPARISON, Study, render

LOG = logging.getLogger(__name__)
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"

__all__ = ["MAX_BODY", "SECONDS_PER_COMPARISON", "Handler", "Study", "StudyServer", "render"]


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
            (read-only, full; :class:`~lossbench.userstudy.answers.FolderLock`).
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

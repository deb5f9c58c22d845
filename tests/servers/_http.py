"""HTTP plumbing shared by the fake servers: threading server, request recording, fault application."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from .faults import DROP, INVALID_JSON, RATE_LIMIT, SERVER_ERROR, SLOW, Faults


class Headers(dict[str, str]):
    """Request headers; lookups ignore case (keys are stored lower-cased)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as received; ``fault`` and ``status`` are filled in once it is answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    target: str
    number: int = 0
    fault: str | None = None
    status: int | None = None
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class Response:
    """A complete answer: status, extra headers and the JSON (or other) body."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json; charset=utf-8"


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON response with compact encoding."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status, body, headers or [])


def ory_error(status: int, message: str, reason: str | None = None) -> Response:
    """The Ory JSON API error format ``{"error": {"code", "status", "message"[, "reason"]}}``."""
    error: dict[str, Any] = {"code": status, "status": HTTPStatus(status).phrase, "message": message}
    if reason:
        error["reason"] = reason
    return json_response(status, {"error": error})


def _gateway_page(status: int) -> Response:
    phrase = HTTPStatus(status).phrase
    html = f"<html><head><title>{status} {phrase}</title></head><body><h1>{status} {phrase}</h1></body></html>"
    return Response(status, html.encode(), content_type="text/html; charset=utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers; every answer has a Content-Length
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections give up eventually
    server_version = "FakeIdentityServer/1.0"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def _dispatch(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (requests are recorded instead)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 16+ simultaneous connects must not overflow the listen backlog
    fake: FakeServer


class FakeServer:
    """Base of the fake API servers: binds 127.0.0.1:0, serves in a background thread, records requests.

    Subclasses implement :meth:`route`. Use as a context manager (or :meth:`start`/:meth:`stop`).
    """

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._fault_counts: Counter[str] = Counter()
        self._connections: set[socket.socket] = set()
        self.errors: list[BaseException] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    # -- observation -----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def fault_counts(self) -> dict[str, int]:
        """Faults injected by this server, per kind (``slow``, ``rate_limit``, ``server_error``, ...)."""
        with self._lock:
            return dict(self._fault_counts)

    def clear(self) -> None:
        """Forget recorded requests, fault counts and errors (the fault counter is :meth:`Faults.reset`)."""
        with self._lock:
            self._requests.clear()
            self._fault_counts.clear()
            self.errors.clear()

    def count_fault(self, kind: str) -> None:
        """Count one injected fault of ``kind``."""
        with self._lock:
            self._fault_counts[kind] += 1

    # -- to implement ----------------------------------------------------------------------------------

    def route(self, request: RecordedRequest) -> Response:
        """Answer a (non-faulted) request."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> Response:
        """The API's error response (Ory format by default)."""
        return ory_error(status, message)

    # -- serving ---------------------------------------------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _serve(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        split = urlsplit(handler.path)
        raw: dict[str, str] = {}
        for name, value in handler.headers.items():
            key = name.lower()
            raw[key] = f"{raw[key]}, {value}" if key in raw else value
        headers = Headers(raw)
        request = RecordedRequest(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            target=handler.path,
        )
        decision = self.faults.decide()
        request.number = decision.number
        request.fault = decision.kind
        with self._lock:
            self._requests.append(request)
            if decision.slow:
                self._fault_counts[SLOW] += 1
            if decision.kind:
                self._fault_counts[decision.kind] += 1
        if decision.delay > 0:
            time.sleep(decision.delay)  # in this handler thread, no lock held

        if decision.kind == RATE_LIMIT:
            response = self.error(429, "Too many requests, slow down")
            response.headers.append(("Retry-After", self.faults.retry_after_header()))
        elif decision.kind == SERVER_ERROR:
            status = decision.status or 500
            response = self.error(status, "Internal server error") if status == 500 else _gateway_page(status)
        else:
            try:
                response = self.route(request) if request.method == "GET" else self.error(405, "Method not allowed")
            except Exception as exc:  # a bug in the fake: report it as a 500 and keep it for the tests
                with self._lock:
                    self.errors.append(exc)
                response = self.error(500, f"fake server bug: {exc!r}")

        body = response.body
        declared = len(body)
        status = response.status
        if decision.kind == INVALID_JSON:
            status = 200
            body = body[: max(1, len(body) // 2)]
            declared = len(body)
        elif decision.kind == DROP:
            body = body[: len(body) // 2]
        request.status = status
        self._write(handler, status, response, body, declared, close=decision.kind == DROP)

    @staticmethod
    def _write(handler: _Handler, status: int, response: Response, body: bytes, declared: int, *, close: bool) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", response.content_type)
            handler.send_header("Content-Length", str(declared))
            for name, value in response.headers:
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
            if close:
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client went away (timeout, reset): nothing to answer to
            handler.close_connection = True

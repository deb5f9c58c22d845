"""An httpx transport over the standard library's ``http.client``, with keep-alive pooling.

Bulk pulls make thousands of small requests from many threads; httpx's default transport
(httpcore + h11, pure Python) costs about twice the CPU per request of ``http.client``'s C
accelerated parsing, which on a small machine decides whether a latency-bound fetch keeps up.
This transport plugs into httpx (requests, responses, errors stay httpx's, and tests can
swap in ``httpx.MockTransport``); it speaks HTTP/1.1 only, which is all the APIs need.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections import defaultdict

import httpx

_Key = tuple[str, str, int]


class StdlibTransport(httpx.BaseTransport):
    """HTTP/1.1 keep-alive connections from ``http.client``, pooled per host."""

    def __init__(
        self, *, timeout: float = 30.0, max_idle_per_host: int = 32, ssl_context: ssl.SSLContext | None = None
    ):
        self._timeout = timeout
        self._max_idle = max_idle_per_host
        self._ssl = ssl_context or ssl.create_default_context()
        self._idle: defaultdict[_Key, list[http.client.HTTPConnection]] = defaultdict(list)
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self, key: _Key) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle[key]:
                return self._idle[key].pop(), True
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._ssl), False
        return http.client.HTTPConnection(host, port, timeout=self._timeout), False

    def _release(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle[key]) < self._max_idle:
                self._idle[key].append(connection)
                return
        connection.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key: _Key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        target = url.raw_path.decode("ascii")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        body = request.read() or None
        for attempt in (1, 2):
            connection, reused = self._connection(key)
            try:
                connection.request(request.method, target, body=body, headers=headers)
                response = connection.getresponse()
                content = response.read()
            except TimeoutError as error:
                connection.close()
                raise httpx.ReadTimeout(str(error) or "timed out", request=request) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                connection.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: try a fresh one
                raise httpx.RemoteProtocolError(f"connection closed: {type(error).__name__}", request=request) from None
            except http.client.IncompleteRead:
                connection.close()
                raise httpx.RemoteProtocolError("the response body was cut short", request=request) from None
            except ValueError:
                # http.client refuses header values with control characters; its message
                # quotes the value, which may be a credential: never pass it on
                connection.close()
                raise httpx.LocalProtocolError("a request header value cannot be sent", request=request) from None
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                kind = (
                    httpx.ConnectError
                    if isinstance(error, socket.gaierror | ConnectionRefusedError)
                    else httpx.NetworkError
                )
                raise kind(type(error).__name__, request=request) from None
            if response.will_close:
                connection.close()
            else:
                self._release(key, connection)
            return httpx.Response(response.status, headers=response.getheaders(), content=content, request=request)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for connections in self._idle.values() for c in connections]
            self._idle.clear()
        for connection in idle:
            connection.close()

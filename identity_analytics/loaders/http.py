"""HTTP plumbing of the remote loaders: one client, timeouts, retries, safe URLs.

Retries (tenacity) cover connection errors, bodies cut short, bodies that are not the JSON
they claim to be, 429 and 5xx; they back off exponentially with jitter and honour
``Retry-After``. After the last attempt a :class:`SourceError` names the URL without
credentials. Credentials travel only in the ``Authorization`` header of each request: they
are never logged, never in a URL, never in a repr or an error message.
"""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from identity_analytics.errors import SourceError
from identity_analytics.loaders.redaction import safe_url
from identity_analytics.loaders.transport import StdlibTransport

logger = logging.getLogger(__name__)

#: Longest wait honoured from a server's ``Retry-After``.
MAX_RETRY_AFTER = 60.0


def check_transport_security(base_url: str, allow_insecure: bool) -> None:
    """Refuse plain ``http://`` except to loopback, unless explicitly allowed."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{safe_url(base_url)!r} is not an http(s) URL")
    if parts.scheme == "https" or allow_insecure:
        return
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(
            f"refusing plain http to {safe_url(base_url)}: credentials would cross the network unencrypted; "
            "use https, or pass allow_insecure=True for a trusted network"
        )


#: What an HTTP header value may hold: visible ASCII and inner spaces.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


def bearer_credential(value: str, what: str) -> str:
    """``value`` without surrounding whitespace (a key read from a file often ends in a
    newline); a :class:`ValueError` naming ``what``, never the value, if it cannot travel
    in an HTTP header."""
    stripped = value.strip()
    if not _HEADER_SAFE.fullmatch(stripped):
        raise ValueError(
            f"the {what} is empty or holds a control or non-ASCII character, which cannot be sent "
            "in an HTTP header; check how it was read (e.g. the file or variable it came from)"
        )
    return stripped


class InvalidResponse(SourceError):
    """A server kept answering with a body that is not the JSON the API defines."""


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's requested wait, if any."""

    def __init__(self, message: str, retry_after: float | None = None, *, invalid_body: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.invalid_body = invalid_body


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: the exponential backoff applies
    return max(0.0, parsed.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per request, backoff base and cap (seconds), timeout."""

    attempts: int = 8
    backoff: float = 0.2
    max_backoff: float = 10.0
    timeout: float = 30.0


class HttpSource:
    """One remote API: base URL, credential, retry policy and a pooled httpx client.

    ``credential`` (an API key or token) is sent as ``Authorization: Bearer``; a per-request
    ``token`` overrides it (Klustr user tokens).
    """

    def __init__(
        self,
        base_url: str,
        credential: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        allow_insecure: bool = False,
        max_connections: int = 20,
        transport: httpx.BaseTransport | None = None,
    ):
        check_transport_security(base_url, allow_insecure)
        self.base_url = base_url.rstrip("/")
        self._credential = bearer_credential(credential, "API key") if credential else credential
        self.retry = retry or RetryPolicy()
        # Requests go straight to the transport: httpx's client layer (cookies, auth flows,
        # redirects, hooks) is not needed here and costs more CPU than the request itself.
        self._transport = transport or StdlibTransport(timeout=self.retry.timeout, max_idle_per_host=max_connections)
        self._timeout = httpx.Timeout(self.retry.timeout).as_dict()
        # One retry controller for all threads (tenacity keeps per-call state thread-local);
        # each call passes its URL as the attempt's argument, which the retry log names.
        self._retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=_log_retry,
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({safe_url(self.base_url)!r})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> HttpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        """An absolute URL for a path of this API (absolute URLs pass through)."""
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def _request(self, path: str, token: str | None) -> tuple[str, dict[str, str]]:
        url = self.url(path)
        credential = bearer_credential(token, "token") if token is not None else self._credential
        headers = {"Accept": "application/json"}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        return url, headers

    def _gave_up(self, url: str, error: _Transient) -> SourceError:
        kind = InvalidResponse if error.invalid_body else SourceError
        return kind(
            f"{safe_url(url)} failed after {self.retry.attempts} attempts ({error}); "
            "check that the service is up, then rerun (with a checkpoint the pull resumes where it stopped)"
        )

    def get(
        self,
        path: str,
        *,
        params: httpx.QueryParams | None = None,
        token: str | None = None,
        accept: tuple[int, ...] = (),
        validate: Callable[[httpx.Response], None] | None = None,
    ) -> httpx.Response:
        """GET with retries. Statuses in ``accept`` (besides 2xx) are returned to the caller.

        ``validate`` may raise ``ValueError`` on a 2xx body (e.g. invalid JSON), which is
        retried like a cut-off body.
        """
        url, headers = self._request(path, token)
        if params:
            url = str(httpx.URL(url).copy_merge_params(params))

        def attempt(url: str) -> httpx.Response:
            request = httpx.Request("GET", _parsed(url), headers=headers, extensions={"timeout": self._timeout})
            try:
                response = self._transport.handle_request(request)
                response.request = request  # transports need not set it (MockTransport does not)
                try:
                    response.read()
                finally:
                    response.close()
            except (httpx.TransportError, httpx.DecodingError) as error:
                # DecodingError: a body whose Content-Encoding (e.g. gzip) does not decode
                raise _Transient(type(error).__name__) from None
            return _checked(response, accept, validate)

        try:
            response: httpx.Response = self._retrying(attempt, url)
            return response
        except _Transient as error:
            raise self._gave_up(url, error) from None

    def _wait(self, state: RetryCallState) -> float:
        exponential = wait_random_exponential(multiplier=self.retry.backoff, max=self.retry.max_backoff)(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(MAX_RETRY_AFTER, max(error.retry_after, exponential * 0.1))
        return exponential


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.info("retrying %s after %s (attempt %d)", safe_url(state.args[0]), error, state.attempt_number)


class ApiClient:
    """Base of the API clients: one :class:`HttpSource`, closed with the client."""

    http: HttpSource

    def __repr__(self) -> str:
        return f"{type(self).__name__}({safe_url(self.http.base_url)!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refuse_redirects(response: httpx.Response) -> None:
    """A redirect is the server's configuration, not an answer: stop with a clear error."""
    if 300 <= response.status_code < 400:
        location = safe_url(response.headers.get("location", "?"))
        raise SourceError(
            f"{safe_url(response.url)} answered HTTP {response.status_code} (a redirect to {location}): "
            "use that base URL"
        )


@functools.lru_cache(maxsize=64)
def _parsed(url: str) -> httpx.URL:
    """A parsed URL; bulk pulls request the same few URLs thousands of times."""
    return httpx.URL(url)


def _checked(
    response: httpx.Response, accept: tuple[int, ...], validate: Callable[[httpx.Response], None] | None
) -> httpx.Response:
    """The response, or :class:`_Transient` for statuses and bodies worth another attempt."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise _Transient(f"HTTP {status}", _retry_after(response))
    if status in accept or not 200 <= status < 300 or validate is None:
        return response
    try:
        validate(response)
    except ValueError as error:
        raise _Transient(f"invalid response body ({type(error).__name__})", invalid_body=True) from None
    return response


def json_body(response: httpx.Response) -> bytes:
    """The JSON body as UTF-8 bytes, without the byte order mark some servers send."""
    return response.content.removeprefix(b"\xef\xbb\xbf")


def json_array(response: httpx.Response) -> None:
    """Validator: the body is a JSON array."""
    if not isinstance(json.loads(json_body(response)), list):
        raise ValueError("not a JSON array")


def json_object(response: httpx.Response) -> None:
    """Validator: the body is a JSON object."""
    if not isinstance(json.loads(json_body(response)), dict):
        raise ValueError("not a JSON object")


def json_value(response: httpx.Response) -> None:
    """Validator: the body is JSON (of any type; an empty body counts as ``null``)."""
    body = json_body(response).strip()
    if body:
        json.loads(body)

"""HTTP plumbing: retries, Retry-After, safe URLs, transport security (httpx.MockTransport)."""

from __future__ import annotations

import time

import httpx
import pytest

import identity_analytics as ia
from identity_analytics.loaders.http import HttpSource, RetryPolicy, check_transport_security, json_object
from identity_analytics.loaders.redaction import safe_url

FAST = RetryPolicy(attempts=4, backoff=0.001, max_backoff=0.005, timeout=2)


def _source(handler, credential: str | None = "KEY-123") -> HttpSource:  # type: ignore[no-untyped-def]
    return HttpSource("http://127.0.0.1:1", credential, retry=FAST, transport=httpx.MockTransport(handler))


def test_safe_url_drops_user_info_and_secret_parameters() -> None:
    url = "https://user:pa55@api.example.org:8443/x/y?token=abc&page_size=5&api_key=zzz"
    assert safe_url(url) == "https://api.example.org:8443/x/y?token=%2A%2A%2A&page_size=5&api_key=%2A%2A%2A"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:4434", "http://localhost:80", "http://[::1]:4434", "https://kratos.example.org"]
)
def test_loopback_and_https_are_allowed(url: str) -> None:
    check_transport_security(url, allow_insecure=False)


def test_plain_http_elsewhere_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ValueError, match="refusing plain http to http://10.0.0.5:4434"):
        check_transport_security("http://user:secret@10.0.0.5:4434", allow_insecure=False)
    check_transport_security("http://10.0.0.5:4434", allow_insecure=True)
    with pytest.raises(ValueError, match="not an http"):
        check_transport_security("ftp://example.org", allow_insecure=True)


def test_transient_failures_are_retried_then_succeed() -> None:
    answers = [
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200, text="{oops"),
    ]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return answers.pop(0) if answers else httpx.Response(200, json={"ok": True})

    response = _source(handler).get("/x", validate=json_object)
    assert response.json() == {"ok": True} and seen == ["Bearer KEY-123"] * 4


def test_connection_errors_are_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        return httpx.Response(200, json={})

    assert _source(handler).get("/x").status_code == 200 and calls == 3


def test_retry_after_is_waited_for() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "0.3"})]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else httpx.Response(200, json={})

    start = time.perf_counter()
    _source(handler).get("/x")
    assert time.perf_counter() - start >= 0.3


def test_client_errors_are_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404, json={"error": {"code": 404}})

    assert _source(handler).get("/x", accept=(404,)).status_code == 404 and calls == 1


def test_giving_up_raises_source_error_naming_the_url_without_secrets() -> None:
    source = HttpSource(
        "http://127.0.0.1:1/base", "KEY-123", retry=FAST, transport=httpx.MockTransport(lambda r: httpx.Response(502))
    )
    with pytest.raises(
        ia.SourceError, match=r"http://127.0.0.1:1/base/x\?page=2 failed after 4 attempts \(HTTP 502\)"
    ) as raised:
        source.get("/x", params=httpx.QueryParams({"page": 2}))
    assert "KEY-123" not in str(raised.value) and "KEY-123" not in repr(source)


def test_user_token_overrides_the_source_credential() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization", ""))
        return httpx.Response(200, json={})

    source = _source(handler, credential=None)
    source.get("/a")
    source.get("/b", token="user-token")
    assert seen == ["", "Bearer user-token"]


def test_an_unreadable_retry_after_falls_back_to_backoff() -> None:
    replies = iter([httpx.Response(429, headers={"Retry-After": "soon"}), httpx.Response(200, json={})])
    assert _source(lambda request: next(replies)).get("/x").status_code == 200

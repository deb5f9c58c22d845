"""Self-tests of the fake Kratos / Klustr servers, with a plain ``http.client`` as the client."""

from __future__ import annotations

import http.client
import itertools
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import pytest

from tests.servers import (
    Faults,
    KlustrServer,
    KratosServer,
    kratos_identities_from_fixtures,
    token_for,
    users_from_fixtures,
)
from tests.servers.faults import DROP, DUPLICATE, INVALID_JSON, RATE_LIMIT, SERVER_ERROR, SLOW
from tests.servers.kratos import identity_key

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
IDENTITIES = FIXTURES / "identities.ndjson"
DEMOGRAPHICS = FIXTURES / "demographics.ndjson"
SECRET = "PLANTED-SECRET"
API_KEY = "ory_pat_test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LINK_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?([^",;]+)"?')
RETRYABLE = {429, 500, 502, 503}


@dataclass
class Reply:
    """A complete HTTP answer."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def links(self) -> dict[str, str]:
        return {rel: target for target, rel in LINK_RE.findall(self.headers.get("Link") or "")}


def connect(base: str) -> http.client.HTTPConnection:
    """A (keep-alive capable) connection to the server at ``base``."""
    split = urlsplit(base)
    return http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=10)


def get(base: str, target: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    """One request on a fresh connection; ``target`` may be a path or an absolute URL on ``base``."""
    split = urlsplit(urljoin(base, target))
    conn = connect(base)
    try:
        conn.request(method, split.path + (f"?{split.query}" if split.query else ""), headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def get_retrying(base: str, target: str, headers: dict[str, str] | None = None, attempts: int = 60) -> Reply:
    """Naive retry loop: retries 429/5xx, broken connections and unparseable JSON."""
    for _ in range(attempts):
        try:
            reply = get(base, target, headers)
        except (http.client.HTTPException, OSError):
            continue
        if reply.status in RETRYABLE:
            continue
        try:
            reply.json()
        except ValueError:
            continue
        return reply
    raise AssertionError(f"{target} never succeeded in {attempts} attempts")


def walk_pages(base: str, first: str, headers: dict[str, str] | None = None, retry: bool = False) -> list[Reply]:
    """Follow ``rel="next"`` links until there is none."""
    replies: list[Reply] = []
    target: str | None = first
    while target is not None:
        reply = get_retrying(base, target, headers) if retry else get(base, target, headers)
        assert reply.status == 200, reply.body
        replies.append(reply)
        target = reply.links().get("next")
        assert len(replies) < 1000, "pagination does not terminate"
    return replies


def assert_ory_error(reply: Reply, status: int) -> None:
    assert reply.status == status
    assert reply.headers.get_content_type() == "application/json"
    error = reply.json()["error"]
    assert error["code"] == status
    assert error["status"]
    assert error["message"]


@pytest.fixture(scope="module")
def fixture_identities() -> list[dict[str, Any]]:
    return kratos_identities_from_fixtures(IDENTITIES)


@pytest.fixture(scope="module")
def kratos(fixture_identities: list[dict[str, Any]]) -> Any:
    """A fault-free Kratos with the fixtures and an API key (requests cleared per test)."""
    with KratosServer(fixture_identities, api_key=API_KEY) as server:
        yield server


@pytest.fixture
def fresh_kratos(kratos: KratosServer) -> KratosServer:
    kratos.clear()
    return kratos


# -- fixtures helper ---------------------------------------------------------------------------------------


def test_fixture_identities_are_deduplicated_and_all_have_ids(fixture_identities: list[dict[str, Any]]) -> None:
    keys = [identity_key(i) for i in fixture_identities]
    assert len(keys) == len(set(keys)) > 1900
    assert all(i.get("id") not in (None, "") for i in fixture_identities)
    assigned = [i["id"] for i in fixture_identities if isinstance(i["id"], str) and UUID_RE.match(i["id"])]
    assert len(assigned) == 2  # the record without id and the one with an empty id
    assert kratos_identities_from_fixtures(IDENTITIES, limit=5) == fixture_identities[:5]
    # the latest version of a duplicated id wins (fixture-00010 appears twice)
    (dup,) = [i for i in fixture_identities if i["id"] == "fixture-00010"]
    assert dup["updated_at"] == "2026-06-22T08:24:51.000Z"


# -- Kratos: pagination ------------------------------------------------------------------------------------


@pytest.mark.parametrize("link_style", ["relative", "absolute"])
def test_pagination_returns_every_identity_once_in_id_order(
    fixture_identities: list[dict[str, Any]], link_style: Any
) -> None:
    with KratosServer(fixture_identities, link_style=link_style) as server:
        conn = connect(server.url)  # one keep-alive connection
        seen: list[Any] = []
        target: str | None = "/admin/identities?page_size=100"
        pages = 0
        while target is not None:
            conn.request("GET", target)
            response = conn.getresponse()
            assert response.status == 200
            reply = Reply(response.status, response.headers, response.read())
            page = reply.json()
            assert len(page) <= 100
            seen.extend(identity_key(i) for i in page)
            links = reply.links()
            base = server.url if link_style == "absolute" else ""
            assert links["first"] == base + "/admin/identities?page_size=100"
            nxt = links.get("next")
            if nxt is not None:
                prefix = server.url + "/admin/identities?" if link_style == "absolute" else "/admin/identities?"
                assert nxt.startswith(prefix)
                assert "page_size=100" in nxt
                target = urlsplit(nxt).path + "?" + urlsplit(nxt).query
            else:
                target = None
            pages += 1
        conn.close()
    expected = sorted(identity_key(i) for i in fixture_identities)
    assert seen == expected
    assert pages == -(-len(expected) // 100)
    assert len({r.headers["Host"] for r in server.requests}) == 1


def test_default_page_size_and_kratos_link_format(fresh_kratos: KratosServer) -> None:
    reply = get(fresh_kratos.url, "/admin/identities", AUTH)
    assert reply.status == 200
    assert len(reply.json()) == 250
    link = reply.headers["Link"]
    assert re.fullmatch(
        r'</admin/identities\?page_size=250>; rel="first",'
        r'</admin/identities\?page_size=250&page_token=[\w-]+>; rel="next"',
        link,
    )
    token = reply.links()["next"].split("page_token=")[1]
    assert "fixture" not in token  # opaque
    last = get(fresh_kratos.url, "/admin/identities?page_size=500&page_token=" + token, AUTH)
    assert set(last.links()) == {"first", "next"}


@pytest.mark.parametrize("page_size", ["0", "501", "-1", "abc", "", "2.5"])
def test_page_size_out_of_range_is_400(fresh_kratos: KratosServer, page_size: str) -> None:
    assert_ory_error(get(fresh_kratos.url, f"/admin/identities?page_size={page_size}", AUTH), 400)


@pytest.mark.parametrize("page_size", [1, 500])
def test_page_size_bounds_are_accepted(fresh_kratos: KratosServer, page_size: int) -> None:
    reply = get(fresh_kratos.url, f"/admin/identities?page_size={page_size}", AUTH)
    assert reply.status == 200
    assert len(reply.json()) == page_size


def test_invalid_page_token_is_400(fresh_kratos: KratosServer) -> None:
    assert_ory_error(get(fresh_kratos.url, "/admin/identities?page_token=not%20a%20token", AUTH), 400)


def test_last_page_has_no_next_link() -> None:
    identities = [{"id": f"id-{n:02d}"} for n in range(6)]
    with KratosServer(identities) as server:
        replies = walk_pages(server.url, "/admin/identities?page_size=3")
        assert [len(r.json()) for r in replies] == [3, 3]
        assert "next" not in replies[-1].links()
        assert "first" in replies[-1].links()
        empty = KratosServer([])
        with empty:
            reply = get(empty.url, "/admin/identities")
            assert reply.json() == []
            assert set(reply.links()) == {"first"}


def test_ids_filter(fresh_kratos: KratosServer, fixture_identities: list[dict[str, Any]]) -> None:
    wanted = ["fixture-00005", "fixture-00003", "fixture-00003", "does-not-exist", "fixture-01000"]
    reply = get(fresh_kratos.url, "/admin/identities?page_size=1&" + "&".join(f"ids={i}" for i in wanted), AUTH)
    assert reply.status == 200
    assert sorted(i["id"] for i in reply.json()) == ["fixture-00003", "fixture-00005", "fixture-01000"]
    assert "Link" not in reply.headers  # no pagination with ids
    many = [i["id"] for i in fixture_identities if isinstance(i["id"], str)][:500]
    ok = get(fresh_kratos.url, "/admin/identities?" + "&".join(f"ids={quote(i)}" for i in many), AUTH)
    assert ok.status == 200
    assert len(ok.json()) == 500
    too_many = get(fresh_kratos.url, "/admin/identities?" + "&".join(f"ids=x{n}" for n in range(501)), AUTH)
    assert_ory_error(too_many, 400)
    assert len(fresh_kratos.requests[-1].query["ids"]) == 501


def test_organization_filter_and_links_keep_it() -> None:
    identities = [{"id": f"id-{n:02d}", "organization_id": "org-a" if n % 2 else "org-b"} for n in range(20)]
    with KratosServer(identities) as server:
        replies = walk_pages(server.url, "/admin/identities?organization_id=org-a&page_size=3")
        items = [i for r in replies for i in r.json()]
        assert [i["id"] for i in items] == [f"id-{n:02d}" for n in range(1, 20, 2)]
        assert all("organization_id=org-a" in r.headers["Link"] for r in replies)


def test_auth_required_with_api_key(fresh_kratos: KratosServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        for target in ("/admin/identities", "/admin/identities/fixture-00001"):
            reply = get(fresh_kratos.url, target, headers)
            assert_ory_error(reply, 401)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert get(fresh_kratos.url, "/admin/identities/fixture-00001", AUTH).status == 200
    recorded = fresh_kratos.requests
    assert recorded[-1].headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded[-1].headers.get("AUTHORIZATION") == f"Bearer {API_KEY}"
    assert "Authorization" not in recorded[0].headers


def test_credentials_secrets_only_with_include_credential(fresh_kratos: KratosServer) -> None:
    plain = get(fresh_kratos.url, "/admin/identities?page_size=50", AUTH)
    for identity in plain.json():
        assert SECRET not in json.dumps(identity.get("credentials"))
        for cred in (identity.get("credentials") or {}).values():
            assert "config" not in cred
            if str(identity["id"]).startswith("fixture-"):
                assert cred["type"] and cred["identifiers"]
    assert SECRET in plain.body.decode()  # metadata_admin is returned by the admin API: a client must drop it
    single = get(fresh_kratos.url, "/admin/identities/fixture-00001", AUTH).json()
    assert set(single["credentials"]) == {"password", "oidc"}
    assert SECRET not in json.dumps(single["credentials"])

    full = get(fresh_kratos.url, "/admin/identities?page_size=50&include_credential=password", AUTH)
    assert any(SECRET in json.dumps(i.get("credentials")) for i in full.json())
    assert "include_credential=password" in full.headers["Link"]
    full_single = get(fresh_kratos.url, "/admin/identities/fixture-00001?include_credential=oidc", AUTH).json()
    assert "PLANTED-SECRET-token-1" in json.dumps(full_single["credentials"])
    asked = [r for r in fresh_kratos.requests if "include_credential" in r.query]
    assert len(asked) == 2


def test_get_identity_and_404s(fresh_kratos: KratosServer) -> None:
    reply = get(fresh_kratos.url, "/admin/identities/fixture-00002", AUTH)
    assert reply.status == 200
    assert reply.json()["id"] == "fixture-00002"
    assert get(fresh_kratos.url, "/admin/identities/12345", AUTH).json()["id"] == 12345
    assert_ory_error(get(fresh_kratos.url, "/admin/identities/nope", AUTH), 404)
    assert_ory_error(get(fresh_kratos.url, "/admin/identities/a%2Fb", AUTH), 404)
    assert_ory_error(get(fresh_kratos.url, "/admin/sessions", AUTH), 404)
    assert_ory_error(get(fresh_kratos.url, "/", AUTH), 404)
    assert_ory_error(get(fresh_kratos.url, "/admin/identities", AUTH, method="POST"), 405)


def test_identities_without_id_get_deterministic_uuid() -> None:
    data: list[dict[str, Any]] = [
        {"traits": {"email": "a@example.org"}},
        {"id": "", "traits": {}},
        {"id": None},
        {"id": "kept"},
    ]
    with KratosServer(data) as one, KratosServer(data) as two:
        first = get(one.url, "/admin/identities").json()
        assert [i["id"] for i in first] == [i["id"] for i in get(two.url, "/admin/identities").json()]
        generated = [i["id"] for i in first if i["id"] != "kept"]
        assert len(set(generated)) == 3
        assert all(UUID_RE.match(i) for i in generated)
        assert get(one.url, f"/admin/identities/{generated[0]}").status == 200
    assert "id" not in data[0]  # the caller's data is not modified


# -- faults -----------------------------------------------------------------------------------------------


def test_faults_validation_and_intermittency() -> None:
    with pytest.raises(ValueError):
        Faults(latency=-1)
    with pytest.raises(ValueError):
        Faults(drop_every=-2)
    assert Faults().intermittent
    assert not Faults(rate_limit_every=1).intermittent
    assert not Faults(server_error_every=3, server_error_burst=3).intermittent
    only_every = Faults(server_error_every=2)
    assert [only_every.decide().kind for _ in range(4)] == [None, SERVER_ERROR, None, SERVER_ERROR]
    # every intermittent configuration lets some request through in every short window
    for rate, drop, bad_json, burst in itertools.product((0, 2, 3, 5), (0, 2, 3), (0, 2, 7), ((0, 0), (3, 2), (5, 1))):
        faults = Faults(
            rate_limit_every=rate,
            drop_every=drop,
            invalid_json_every=bad_json,
            server_error_every=burst[0],
            server_error_burst=burst[1],
        )
        assert faults.intermittent
        streak = longest = 0
        for _ in range(300):
            streak = streak + 1 if faults.decide().kind else 0
            longest = max(longest, streak)
        assert longest < 20, faults


def test_faults_are_deterministic() -> None:
    def run() -> list[tuple[str | None, int | None]]:
        faults = Faults(server_error_every=4, server_error_burst=3, rate_limit_every=5, seed=7)
        return [(d.kind, d.status) for d in (faults.decide() for _ in range(40))]

    first = run()
    assert first == run()
    assert {s for k, s in first if k == SERVER_ERROR} <= {500, 502, 503}
    assert len({s for k, s in first if k == SERVER_ERROR}) > 1


def test_rate_limit_has_retry_after(fixture_identities: list[dict[str, Any]]) -> None:
    with KratosServer(fixture_identities[:10], faults=Faults(rate_limit_every=2, retry_after=3)) as server:
        statuses = [get(server.url, "/admin/identities") for _ in range(4)]
        assert [r.status for r in statuses] == [200, 429, 200, 429]
        assert statuses[1].headers["Retry-After"] == "3"
        assert_ory_error(statuses[1], 429)
        assert server.fault_counts == {RATE_LIMIT: 2}
        assert [r.fault for r in server.requests] == [None, RATE_LIMIT, None, RATE_LIMIT]
    with KratosServer([], faults=Faults(rate_limit_every=1, retry_after=0.5)) as server:
        assert get(server.url, "/admin/identities").headers["Retry-After"] == "0.5"


def test_server_error_bursts() -> None:
    with KratosServer([{"id": "a"}], faults=Faults(server_error_every=3, server_error_burst=2, seed=1)) as server:
        statuses = [get(server.url, "/admin/identities").status for _ in range(9)]
        assert [s >= 500 for s in statuses] == [False, False, True, True, False, True, True, False, True]
        assert set(statuses) - {200} <= {500, 502, 503}
        assert server.fault_counts == {SERVER_ERROR: 5}
    with KlustrServer({}, faults=Faults(server_error_every=2, server_error_burst=1, seed=3)) as server:
        replies = [get(server.url, "/identities/me") for _ in range(12)]
        errors = [r for r in replies if r.status >= 500]
        assert len(errors) == 6
        assert {r.status for r in errors} == {500, 502, 503}  # 502/503 answer an HTML gateway page
        assert all(r.headers.get_content_type() == "text/html" for r in errors if r.status != 500)


def test_dropped_connection_raises_on_client_side(fixture_identities: list[dict[str, Any]]) -> None:
    with KratosServer(fixture_identities[:50], faults=Faults(drop_every=2)) as server:
        assert get(server.url, "/admin/identities").status == 200
        conn = connect(server.url)
        conn.request("GET", "/admin/identities")
        response = conn.getresponse()
        assert response.status == 200
        declared = int(response.headers["Content-Length"])
        with pytest.raises(http.client.IncompleteRead) as excinfo:
            response.read()
        assert 0 < len(excinfo.value.partial) < declared
        conn.close()
        assert server.fault_counts == {DROP: 1}


def test_invalid_json_body(fixture_identities: list[dict[str, Any]]) -> None:
    with KratosServer(fixture_identities[:20], faults=Faults(invalid_json_every=1)) as server:
        reply = get(server.url, "/admin/identities")
        assert reply.status == 200
        assert int(reply.headers["Content-Length"]) == len(reply.body) > 0
        with pytest.raises(ValueError):
            reply.json()
        assert server.fault_counts == {INVALID_JSON: 1}


def test_slow_every() -> None:
    with KratosServer([{"id": "a"}], faults=Faults(slow_every=2, slow_seconds=0.25)) as server:
        durations = []
        for _ in range(2):
            started = time.perf_counter()
            assert get(server.url, "/admin/identities").status == 200
            durations.append(time.perf_counter() - started)
        assert durations[0] < 0.2 <= 0.25 <= durations[1]
        assert server.fault_counts == {SLOW: 1}


def test_duplicate_across_pages() -> None:
    identities = [{"id": f"id-{n:02d}"} for n in range(10)]
    with KratosServer(identities, faults=Faults(duplicate_across_pages=True)) as server:
        pages = [[i["id"] for i in r.json()] for r in walk_pages(server.url, "/admin/identities?page_size=3")]
        assert pages == [
            ["id-00", "id-01", "id-02"],
            ["id-02", "id-03", "id-04", "id-05"],
            ["id-05", "id-06", "id-07", "id-08"],
            ["id-08", "id-09"],
        ]
        assert server.fault_counts == {DUPLICATE: 3}


def test_naive_retry_loop_gets_every_page_despite_all_faults(fixture_identities: list[dict[str, Any]]) -> None:
    faults = Faults(
        rate_limit_every=3,
        server_error_every=7,
        server_error_burst=2,
        drop_every=5,
        invalid_json_every=4,
        slow_every=6,
        slow_seconds=0.01,
        duplicate_across_pages=True,
        seed=42,
    )
    with KratosServer(fixture_identities, api_key=API_KEY, faults=faults) as server:
        replies = walk_pages(server.url, "/admin/identities?page_size=200", AUTH, retry=True)
        keys = [identity_key(i) for r in replies for i in r.json()]
        counts = server.fault_counts
        assert not server.errors
    assert sorted(set(keys)) == sorted(identity_key(i) for i in fixture_identities)
    assert len(keys) - len(set(keys)) == len(replies) - 1  # the duplicated items, one per later page
    assert set(counts) == {RATE_LIMIT, SERVER_ERROR, DROP, INVALID_JSON, SLOW, DUPLICATE}
    assert all(counts[k] > 0 for k in counts)
    statuses = Counter(r.status for r in server.requests)
    assert statuses[429] == counts[RATE_LIMIT]
    assert sum(statuses[s] for s in (500, 502, 503)) == counts[SERVER_ERROR]


def test_latency_overlaps_under_concurrency() -> None:
    with KratosServer([{"id": "a"}], faults=Faults(latency=0.1)) as server:
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: get(server.url, "/admin/identities").status, range(16)))
        elapsed = time.perf_counter() - started
    assert statuses == [200] * 16
    assert 0.1 <= elapsed < 0.8  # serial would be 1.6 s


# -- Klustr -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def users() -> dict[str, dict[str, Any]]:
    return users_from_fixtures(IDENTITIES, DEMOGRAPHICS, limit=60)


@pytest.fixture(scope="module")
def klustr(users: dict[str, dict[str, Any]]) -> Any:
    with KlustrServer(users, forbidden_tokens={"forbidden-token"}) as server:
        yield server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_users_from_fixtures(users: dict[str, dict[str, Any]]) -> None:
    assert len(users) == 60
    assert list(users)[:2] == [token_for(0), token_for(1)] == ["token-0-SECRET-TOKEN-0", "token-1-SECRET-TOKEN-1"]
    first = users[token_for(0)]
    assert first["identity"]["id"] == "fixture-00000"
    assert first["demographics"] == {
        "age": "_15_to_24",
        "income": "middle",
        "gender": "female",
        "household": False,
        "relationship_status": "single",
        "parental_status": "not_parent",
    }
    assert users[token_for(1)]["demographics"] is None  # its demographics line is broken


def test_klustr_me_endpoints(klustr: KlustrServer, users: dict[str, dict[str, Any]]) -> None:
    token = token_for(0)
    me = get(klustr.url, "/identities/me", bearer(token))
    assert me.status == 200
    assert me.json() == users[token]["identity"]
    assert "PLANTED-SECRET-person-0" in me.body.decode()  # the gateway returns metadata_admin ...
    assert "PLANTED-SECRET-hash-0" in me.body.decode()  # ... and credentials
    assert get(klustr.url, "/identities/me/demographics", bearer(token)).json() == users[token]["demographics"]
    assert_ory_error(get(klustr.url, "/identities/me/demographics", bearer(token_for(1))), 404)
    profile = get(klustr.url, "/identities/me/profile", bearer(token)).json()
    assert profile == {
        "traits": users[token]["identity"]["traits"],
        "metadata_public": users[token]["identity"]["metadata_public"],
    }
    assert any(r.headers["Authorization"] == f"Bearer {token}" for r in klustr.requests)


def test_klustr_public_profiles(klustr: KlustrServer, users: dict[str, dict[str, Any]]) -> None:
    identities = [u["identity"] for u in users.values()]
    active = next(i for i in identities if i.get("state") == "active" and i["id"] != "fixture-00001")
    inactive = next(i for i in identities if i.get("state") == "inactive")
    asker = bearer(token_for(1))
    reply = get(klustr.url, f"/identities/public/{active['id']}/profile", asker)
    assert reply.status == 200
    assert reply.json() == {"traits": active["traits"], "metadata_public": active["metadata_public"]}
    assert SECRET not in reply.body.decode()
    assert_ory_error(get(klustr.url, f"/identities/public/{inactive['id']}/profile", asker), 404)
    assert_ory_error(get(klustr.url, "/identities/public/unknown-user/profile", asker), 404)
    assert_ory_error(get(klustr.url, "/identities/public/unknown-user/profile", {}), 401)


def test_klustr_auth_errors(klustr: KlustrServer) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcg=="}, bearer("nope")):
        reply = get(klustr.url, "/identities/me", headers)
        assert_ory_error(reply, 401)
        assert "WWW-Authenticate" in reply.headers
    assert_ory_error(get(klustr.url, "/identities/me", bearer("forbidden-token")), 403)
    assert_ory_error(get(klustr.url, "/identities/me/profile", bearer("forbidden-token")), 403)
    assert_ory_error(get(klustr.url, "/identities/other", bearer(token_for(0))), 404)
    assert_ory_error(get(klustr.url, "/identities/me", bearer(token_for(0)), method="DELETE"), 405)


def test_klustr_faults_and_retry(users: dict[str, dict[str, Any]]) -> None:
    faults = Faults(rate_limit_every=2, retry_after=1, drop_every=3, invalid_json_every=5)
    with KlustrServer(users, faults=faults) as server:
        first = get(server.url, "/identities/me/profile", bearer(token_for(0)))
        second = get(server.url, "/identities/me/profile", bearer(token_for(0)))
        assert first.status == 200
        assert second.status == 429
        assert second.headers["Retry-After"] == "1"
        for n in range(10):
            assert get_retrying(server.url, "/identities/me", bearer(token_for(n))).json()["id"]
        assert set(server.fault_counts) == {RATE_LIMIT, DROP, INVALID_JSON}

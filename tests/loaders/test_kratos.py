"""Kratos admin API loader against a real loopback server, with faults, checkpoints and secrets."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import identity_analytics as ia
from identity_analytics.loaders.http import RetryPolicy
from identity_analytics.loaders.kratos import KratosClient
from tests.conftest import FIXTURES, SECRET_MARKER, TEST_KEY
from tests.servers import Faults, KratosServer, kratos_identities_from_fixtures

API_KEY = "PLANTED-SECRET-api-key-0123"
FAST_RETRY = RetryPolicy(attempts=8, backoff=0.001, max_backoff=0.01, timeout=5)
IDENTITIES = kratos_identities_from_fixtures(FIXTURES / "identities.ndjson")
GOOD_IDS = sorted(i["id"] for i in IDENTITIES if isinstance(i["id"], str) and i["id"])


def _pseudonyms(ds: ia.Dataset) -> list[str]:
    return sorted(ds.identities.column("pseudonym").to_pylist())


def _expected(policy: ia.PrivacyPolicy) -> list[str]:
    return sorted(policy.pseudonym(i) for i in GOOD_IDS)


def test_pull_follows_link_pagination_and_never_asks_for_credentials(policy: ia.PrivacyPolicy) -> None:
    with KratosServer(IDENTITIES, api_key=API_KEY) as server:
        ds = ia.Dataset.from_kratos(server.url, api_key=API_KEY, policy=policy, page_size=200)
        requests = server.requests
    assert _pseudonyms(ds) == _expected(policy)
    assert len(requests) == -(-len(IDENTITIES) // 200)
    assert all(r.headers["Authorization"] == f"Bearer {API_KEY}" for r in requests)
    assert not any("include_credential" in r.query for r in requests)
    assert all(r.query.get("page_size") == ["200"] for r in requests)


def test_every_fault_at_once_still_gives_each_identity_exactly_once(policy: ia.PrivacyPolicy) -> None:
    faults = Faults(
        rate_limit_every=5, retry_after=0, server_error_every=7, server_error_burst=2, drop_every=11,
        invalid_json_every=13, slow_every=17, slow_seconds=0.05, duplicate_across_pages=True,
    )  # fmt: skip
    with KratosServer(IDENTITIES, faults=faults, link_style="absolute") as server:
        ds = ia.Dataset.from_kratos(server.url, policy=policy, page_size=60, retry=FAST_RETRY)
        counts = server.fault_counts
    assert _pseudonyms(ds) == _expected(policy)
    assert {"rate_limit", "server_error", "drop", "invalid_json", "duplicate_across_pages"} <= {
        k for k, v in counts.items() if v
    }
    report = ds.load_report.identities
    pages = -(-len(IDENTITIES) // 60)
    assert report.loaded == len(GOOD_IDS) and report.duplicates == pages - 1  # each later page repeats one item
    assert report.read == report.loaded + report.quarantined + report.duplicates


def test_retry_after_is_honoured(policy: ia.PrivacyPolicy) -> None:
    with KratosServer(IDENTITIES[:10], faults=Faults(rate_limit_every=2, retry_after=1)) as server:
        start = time.perf_counter()
        ds = ia.Dataset.from_kratos(server.url, policy=policy, page_size=5, retry=FAST_RETRY)
        elapsed = time.perf_counter() - start
    assert len(ds) == 10 and elapsed >= 1.0


def test_persistent_failure_raises_source_error_without_credentials(policy: ia.PrivacyPolicy) -> None:
    with KratosServer(IDENTITIES, faults=Faults(server_error_every=1)) as server:
        url = server.url.replace("http://", f"http://user:{API_KEY}@")
        with pytest.raises(ia.SourceError, match=r"/admin/identities.*failed after 3 attempts") as raised:
            ia.Dataset.from_kratos(url, api_key=API_KEY, policy=policy, retry=RetryPolicy(attempts=3, backoff=0.001))
    assert API_KEY not in str(raised.value) and "user:" not in str(raised.value)


def test_wrong_api_key_is_a_source_error(policy: ia.PrivacyPolicy) -> None:
    with KratosServer(IDENTITIES, api_key=API_KEY) as server, pytest.raises(ia.SourceError, match="401.*API key"):
        ia.Dataset.from_kratos(server.url, api_key="wrong", policy=policy)


def test_plain_http_is_refused_except_to_loopback(policy: ia.PrivacyPolicy) -> None:
    with pytest.raises(ValueError, match="refusing plain http"):
        ia.Dataset.from_kratos("http://kratos.example.org:4434", policy=policy)
    with pytest.raises(ia.SourceError):  # allowed, then nothing listens there
        ia.Dataset.from_kratos(
            "http://192.0.2.1:9", policy=policy, allow_insecure=True, retry=RetryPolicy(attempts=1, timeout=0.2)
        )


@pytest.mark.parametrize("page_size", [0, 501])
def test_page_size_is_bounded(policy: ia.PrivacyPolicy, page_size: int) -> None:
    with pytest.raises(ValueError, match="page_size must be between 1 and 500"):
        ia.Dataset.from_kratos("http://127.0.0.1:9", policy=policy, page_size=page_size)


def test_organization_filter_is_sent(policy: ia.PrivacyPolicy) -> None:
    with KratosServer(IDENTITIES) as server:
        ia.Dataset.from_kratos(server.url, policy=policy, organization_id="org-1")
        assert all(r.query.get("organization_id") == ["org-1"] for r in server.requests)


def test_client_gets_one_identity_and_lists_by_ids_in_chunks() -> None:
    with KratosServer(IDENTITIES) as server, KratosClient(server.url) as client:
        one = client.get(GOOD_IDS[0])
        assert one.id == GOOD_IDS[0] and "credentials" not in one.model_dump()
        with pytest.raises(ia.NotFound):
            client.get("no-such-identity")
        wanted = [*GOOD_IDS[:1200], "ghost"]
        found = list(client.list_by_ids(wanted))
        assert sorted(i.id for i in found if i.id) == sorted(GOOD_IDS[:1200])
        by_ids = [r for r in server.requests if "ids" in r.query]
        assert sum(len(r.query["ids"]) for r in by_ids) == 1201 and max(len(r.query["ids"]) for r in by_ids) <= 500


def test_dataset_from_kratos_by_ids_loads_only_those(policy: ia.PrivacyPolicy) -> None:
    with KratosServer(IDENTITIES) as server:
        wanted = [*GOOD_IDS[:700], "ghost"]
        ds = ia.Dataset.from_kratos(server.url, policy=policy, ids=wanted)
        assert sorted(ds.identities.column("pseudonym").to_pylist()) == sorted(
            policy.pseudonym(i) for i in GOOD_IDS[:700]
        )
        assert ds.load_report.identities.balanced
        assert all("ids" in r.query and len(r.query["ids"]) <= 500 for r in server.requests)
        with pytest.raises(ValueError, match="ids takes neither checkpoint"):
            ia.Dataset.from_kratos(server.url, policy=policy, ids=wanted, organization_id="org-1")


def test_client_reports_a_malformed_item_without_its_values() -> None:
    broken = {"id": "broken", "recovery_addresses": {"planted": "planted-secret-value"}}
    with (
        KratosServer([broken]) as server,
        KratosClient(server.url) as client,
        pytest.raises(ia.SourceError, match="recovery_addresses") as raised,
    ):
        list(client.list_by_ids(["broken"]))
    assert "planted-secret-value" not in str(raised.value)


def test_no_secret_in_debug_logs_reprs_errors_or_outputs(
    policy: ia.PrivacyPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = Faults(rate_limit_every=4, retry_after=0, drop_every=9)
    with KratosServer(IDENTITIES[:300], api_key=API_KEY, faults=faults) as server:
        ds = ia.Dataset.from_kratos(server.url, api_key=API_KEY, policy=policy, page_size=50, retry=FAST_RETRY)
        with KratosClient(server.url, API_KEY) as client:
            texts = [repr(client), repr(client.http)]
    texts += [caplog.text, repr(ds), json.dumps(ds.quarantine.to_pylist()), json.dumps(ds.identities.to_pylist())]
    texts.append(json.dumps(ds.connection.sql("SELECT * FROM profiles").fetchall(), default=str))
    assert "retrying" in caplog.text  # the faults were logged...
    for text in texts:  # ...but never a key or a planted secret
        assert API_KEY not in text and SECRET_MARKER not in text


KILLABLE = """
import sys, identity_analytics as ia
ia.Dataset.from_kratos(sys.argv[1], policy=ia.PrivacyPolicy(pseudonym_key=sys.argv[3].encode()), page_size=40,
                       checkpoint=sys.argv[2])
"""


def test_killed_pull_resumes_from_its_checkpoint_with_the_same_result(policy: ia.PrivacyPolicy, tmp_path: Path) -> None:
    checkpoint = tmp_path / "pull.checkpoint"
    with KratosServer(IDENTITIES, faults=Faults(latency=0.03, duplicate_across_pages=True)) as server:
        reference = ia.Dataset.from_kratos(server.url, policy=policy, page_size=40)
        child = subprocess.Popen([sys.executable, "-c", KILLABLE, server.url, str(checkpoint), TEST_KEY.decode()])
        deadline = time.time() + 60
        while time.time() < deadline:
            state = json.loads(checkpoint.read_text()) if checkpoint.exists() else {"parts": []}
            if len(state["parts"]) >= 5:
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        parts = json.loads(checkpoint.read_text())["parts"]
        assert 5 <= len(parts) < len(IDENTITIES) // 40
        server.clear()
        resumed = ia.Dataset.from_kratos(server.url, policy=policy, page_size=40, checkpoint=checkpoint)
        first_request = server.requests[0]
    assert "page_token" in first_request.query  # it did not start over
    assert resumed.identities.sort_by("pseudonym").equals(reference.identities.sort_by("pseudonym"))
    assert resumed.load_report == reference.load_report
    assert resumed.quarantine.equals(reference.quarantine)
    assert not checkpoint.exists() and not checkpoint.with_name(checkpoint.name + ".parts").exists()


def _mock_client(handler: object, base: str = "https://kratos.test/prefix") -> KratosClient:
    import httpx

    return KratosClient(base, API_KEY, retry=FAST_RETRY, transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_link_variants_of_rfc_8288_are_followed_on_the_clients_own_base_url() -> None:
    import httpx

    seen: list[httpx.URL] = []
    links = {
        None: '</admin/identities?page_size=2&page_token=b>; rel="prev next"',
        "b": '<https://elsewhere.test/admin/identities?page_size=2&page_token=c>; REL=Next, </x>; rel="first"',
        "c": '</admin/identities?page_size=2&page_token=a>; rel="first"',
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        token = request.url.params.get("page_token")
        body = b"\xef\xbb\xbf" + json.dumps([{"id": f"id-{token}"}]).encode()  # with a byte order mark
        return httpx.Response(200, content=body, headers={"Link": links[token]})

    with _mock_client(handler) as client:
        items = [item["id"] for page in client.pages(page_size=2) for item in page.items]
    assert items == ["id-None", "id-b", "id-c"]
    assert {(u.host, u.path) for u in seen} == {("kratos.test", "/prefix/admin/identities")}


def test_a_redirect_is_a_clear_source_error() -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(308, headers={"Location": "https://kratos.test/v2/admin/identities"})

    with _mock_client(handler) as client, pytest.raises(ia.SourceError, match="HTTP 308 .*redirect to"):
        next(client.pages())


def test_list_by_ids_keeps_request_lines_short() -> None:
    import httpx

    lengths: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        lengths.append(len(request.url.raw_path))
        return httpx.Response(200, json=[{"id": i} for i in request.url.params.get_list("ids")])

    ids = [f"{n:08d}-1111-2222-3333-444444444444" for n in range(1200)]
    with _mock_client(handler) as client:
        assert [i.id for i in client.list_by_ids(ids)] == ids
    assert len(lengths) > 3 and max(lengths) < 8192


def test_identities_with_any_json_traits_or_metadata_parse() -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "x", "traits": "not-an-object", "metadata_public": ["a"]})

    with _mock_client(handler) as client:
        identity = client.get("x")
    assert identity.id == "x" and identity.traits.email is None and identity.metadata_public == ["a"]


def test_an_api_key_read_with_its_newline_works_and_an_unsendable_one_is_named_not_shown(
    policy: ia.PrivacyPolicy,
) -> None:
    with KratosServer(IDENTITIES[:20], api_key=API_KEY) as server:
        ds = ia.Dataset.from_kratos(server.url, api_key=f"{API_KEY}\n", policy=policy)
        assert ds.load_report.identities.loaded == 20
        for bad in (f"{API_KEY}\nX-Injected: 1", f"{API_KEY}é", " "):
            with pytest.raises(ValueError, match="API key is empty or holds a control or non-ASCII") as error:
                ia.Dataset.from_kratos(server.url, api_key=bad, policy=policy)
            assert API_KEY not in str(error.value)


def test_a_ready_client_is_used_as_it_is_and_progress_is_reported_not_drawn(
    policy: ia.PrivacyPolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    reports: list[tuple[str, int, int | None]] = []
    with KratosServer(IDENTITIES, api_key=API_KEY) as server, KratosClient(server.url, API_KEY) as client:
        ds = ia.Dataset.from_kratos(client, policy=policy, page_size=50, progress=lambda *r: reports.append(r))
        assert client.get(GOOD_IDS[0]).id == GOOD_IDS[0]  # still open: the caller's client
        with pytest.raises(ValueError, match="to the KratosClient"):
            ia.Dataset.from_kratos(client, api_key=API_KEY, policy=policy)
    assert _pseudonyms(ds) == _expected(policy)
    pages = -(-len(IDENTITIES) // 50)
    assert len(reports) == pages + 1  # the resumed count (0), then one report per page
    assert [done for _, done, _ in reports] == sorted(done for _, done, _ in reports)
    assert reports[-1][1] == len(IDENTITIES) and all(total is None for *_, total in reports)
    assert reports[0][0].startswith("identities from http://127.0.0.1") and API_KEY not in str(reports)
    assert capsys.readouterr().err == ""  # the library draws nothing

"""Klustr gateway loader against a real loopback server: concurrency, refusals, faults, resume."""

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
from identity_analytics.loaders.klustr import KlustrClient
from tests.conftest import FIXTURES, REFERENCE_DATE, SECRET_MARKER, TEST_KEY
from tests.servers import Faults, KlustrServer, users_from_fixtures

FAST_RETRY = RetryPolicy(attempts=12, backoff=0.001, max_backoff=0.01, timeout=5)
USERS = users_from_fixtures(FIXTURES / "identities.ndjson", FIXTURES / "demographics.ndjson", limit=400)
TOKENS = list(USERS)


def _by_pseudonym(ds: ia.Dataset) -> dict[str, dict[str, str]]:
    return {row.pop("pseudonym"): row for row in ds.identities.to_pylist()}


@pytest.fixture(scope="module")
def from_files() -> dict[str, dict[str, str]]:
    """The same identities and demographics loaded from the fixture files."""
    policy = ia.PrivacyPolicy(pseudonym_key=TEST_KEY)
    return _by_pseudonym(
        ia.Dataset.from_files(
            FIXTURES / "identities.ndjson",
            FIXTURES / "demographics.ndjson",
            policy=policy,
            reference_date=REFERENCE_DATE,
        )
    )


def test_bulk_pull_joins_each_users_demographics(
    policy: ia.PrivacyPolicy, from_files: dict[str, dict[str, str]]
) -> None:
    with KlustrServer(USERS) as server:
        ds = ia.Dataset.from_klustr(server.url, TOKENS, policy=policy, concurrency=8, reference_date=REFERENCE_DATE)
        paths = {r.path for r in server.requests}
    pulled = _by_pseudonym(ds)
    good = [u["identity"]["id"] for u in USERS.values() if isinstance(u["identity"]["id"], str) and u["identity"]["id"]]
    assert sorted(pulled) == sorted(policy.pseudonym(i) for i in good)
    common = set(pulled) & set(from_files)
    assert len(common) >= len(pulled) - 2  # the server gives ids to the fixture records that lack one
    for pseudonym in common:
        assert pulled[pseudonym] == from_files[pseudonym]  # demographics joined to the right identity
    assert paths == {"/identities/me", "/identities/me/demographics"}
    with_demographics = sum(
        1 for u in USERS.values() if u["demographics"] is not None and isinstance(u["identity"]["id"], str)
    )
    assert ds.load_report.demographics.loaded == with_demographics


def test_refused_tokens_are_quarantined_by_position_and_the_pull_goes_on(
    policy: ia.PrivacyPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [*TOKENS[:20], "not-a-token-SECRET-TOKEN-x", TOKENS[20]]
    with KlustrServer(USERS, forbidden_tokens={TOKENS[5]}) as server:
        ds = ia.Dataset.from_klustr(server.url, tokens, policy=policy)
    refused = [r for r in ds.quarantine.to_pylist() if "HTTP" in r["reason"]]
    assert [(r["line"], r["reason"]) for r in refused] == [
        (6, "user token #6: HTTP 403 from /identities/me (access forbidden)"),
        (21, "user token #21: HTTP 401 from /identities/me (token rejected)"),
    ]
    assert ds.load_report.identities.read == 22 and ds.load_report.identities.balanced
    for text in (caplog.text, json.dumps(ds.quarantine.to_pylist()), repr(ds)):
        assert "SECRET-TOKEN" not in text and SECRET_MARKER not in text


def test_faults_do_not_lose_or_duplicate_users(policy: ia.PrivacyPolicy) -> None:
    # Faults hit requests by their global number, so concurrent retries can meet several in a row.
    faults = Faults(
        rate_limit_every=10,
        retry_after=0,
        server_error_every=15,
        server_error_burst=2,
        drop_every=23,
        invalid_json_every=29,
    )
    with KlustrServer(USERS) as clean:
        reference = ia.Dataset.from_klustr(clean.url, TOKENS, policy=policy, reference_date=REFERENCE_DATE)
    with KlustrServer(USERS, faults=faults) as server:
        ds = ia.Dataset.from_klustr(server.url, TOKENS, policy=policy, retry=FAST_RETRY, reference_date=REFERENCE_DATE)
        assert all(server.fault_counts[k] for k in ("rate_limit", "server_error", "drop", "invalid_json"))
    assert ds.identities.sort_by("pseudonym").equals(reference.identities.sort_by("pseudonym"))
    assert ds.load_report.identities == reference.load_report.identities
    assert ds.load_report.demographics == reference.load_report.demographics


def test_profiles_through_the_gateway() -> None:
    token = next(t for t, u in USERS.items() if u["identity"].get("state") == "active")
    user = USERS[token]["identity"]
    with KlustrServer(USERS) as server, KlustrClient(server.url) as client:
        profile = client.profile(token)
        assert profile.traits.email == user["traits"].get("email")
        public = client.public_profile(user["id"], token)
        assert public.traits.username == user["traits"].get("username")
        with pytest.raises(ia.NotFound):
            client.public_profile("nobody", token)


KILLABLE = """
import sys, json, identity_analytics as ia
tokens = json.loads(sys.argv[3])
ia.Dataset.from_klustr(sys.argv[1], tokens, policy=ia.PrivacyPolicy(pseudonym_key=sys.argv[4].encode()),
                       concurrency=4, checkpoint=sys.argv[2])
"""


def test_killed_pull_resumes_with_the_same_result(policy: ia.PrivacyPolicy, tmp_path: Path) -> None:
    checkpoint = tmp_path / "klustr.checkpoint"
    with KlustrServer(USERS, faults=Faults(latency=0.01)) as server:
        reference = ia.Dataset.from_klustr(
            server.url, TOKENS, policy=policy, concurrency=4, reference_date=REFERENCE_DATE
        )
        child = subprocess.Popen(
            [sys.executable, "-c", KILLABLE, server.url, str(checkpoint), json.dumps(TOKENS), TEST_KEY.decode()]
        )
        deadline = time.time() + 60
        while time.time() < deadline and not (checkpoint.exists() and json.loads(checkpoint.read_text())["parts"]):
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        done = json.loads(checkpoint.read_text())["position"]
        assert 0 < done < len(TOKENS)
        server.clear()
        resumed = ia.Dataset.from_klustr(
            server.url, TOKENS, policy=policy, concurrency=4, checkpoint=checkpoint, reference_date=REFERENCE_DATE
        )
        fetched = len([r for r in server.requests if r.path == "/identities/me"])
    assert fetched == len(TOKENS) - done  # only the users not yet committed were fetched again
    assert resumed.identities.sort_by("pseudonym").equals(reference.identities.sort_by("pseudonym"))
    assert resumed.load_report == reference.load_report and resumed.quarantine.equals(reference.quarantine)
    assert not checkpoint.exists()


def test_a_checkpoint_of_another_pull_is_refused(policy: ia.PrivacyPolicy, tmp_path: Path) -> None:
    checkpoint = tmp_path / "c.json"
    checkpoint.write_text(
        json.dumps(
            {"format": "identity-analytics-checkpoint/1", "fingerprint": {"other": 1}, "parts": [], "position": 3}
        )
    )
    with KlustrServer(USERS) as server, pytest.raises(ia.LoadError, match="belongs to another pull"):
        ia.Dataset.from_klustr(server.url, TOKENS[:5], policy=policy, checkpoint=checkpoint)


def _mock_gateway(routes: dict[str, object]) -> KlustrClient:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        reply = routes[request.url.path]
        return reply if isinstance(reply, httpx.Response) else httpx.Response(200, content=reply)  # type: ignore[arg-type]

    return KlustrClient("https://gateway.test", retry=FAST_RETRY, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("demographics", ["204", "null", "empty"])
def test_no_demographics_in_any_form_means_none(demographics: str) -> None:
    import httpx

    reply = {"204": httpx.Response(204), "null": httpx.Response(200, content=b"null"), "empty": httpx.Response(200)}
    me = b'\xef\xbb\xbf{"id": "u1", "traits": {}}'  # with a byte order mark
    with _mock_gateway({"/identities/me": me, "/identities/me/demographics": reply[demographics]}) as client:
        record = client.user("token")
    assert record.record is not None and json.loads(record.record) == {
        "identity": {"id": "u1", "traits": {}},
        "demographics": None,
    }


def test_a_redirecting_gateway_is_a_clear_source_error() -> None:
    import httpx

    redirect = httpx.Response(307, headers={"Location": "https://new.test/identities/me"})
    with _mock_gateway({"/identities/me": redirect}) as client, pytest.raises(ia.SourceError, match="HTTP 307"):
        client.user("token")


def test_profiles_with_extra_keys_keep_the_api_shape() -> None:
    body = json.dumps({"id": "u1", "traits": {"username": "u"}, "metadata_public": {"picture": "p"}}).encode()
    with _mock_gateway({"/identities/me/profile": body}) as client:
        profile = client.profile("token").to_json_dict()
    assert set(profile) == {"traits", "metadata_public"} and profile["traits"]["username"] == "u"


def test_unsendable_tokens_and_answers_of_the_wrong_shape_are_per_user(
    policy: ia.PrivacyPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    users = {token: USERS[token] for token in TOKENS[:6]}
    users[TOKENS[1]] = {"identity": ["not", "an", "object"], "demographics": None}
    users[TOKENS[2]] = {"identity": USERS[TOKENS[2]]["identity"], "demographics": [1, 2]}
    tokens = [
        TOKENS[0],
        TOKENS[1],
        TOKENS[2],
        f" {TOKENS[3]}\r\n",  # read from a file with its line ending: the whitespace goes
        "SECRET-TOKEN-with-newline\ninside",
        "SECRET-TOKEN-é",
    ]
    with KlustrServer(users) as server:
        ds = ia.Dataset.from_klustr(server.url, tokens, policy=policy)
    reasons = {r["line"]: r["reason"] for r in ds.quarantine.to_pylist()}
    assert reasons[2] == "user token #2: /identities/me answered JSON that is not an object"
    assert reasons[3] == "`demographics` is not an object"
    assert "control or non-ASCII" in reasons[5] and "control or non-ASCII" in reasons[6]
    report = ds.load_report
    assert (report.identities.read, report.identities.loaded, report.identities.quarantined) == (6, 3, 3)
    assert report.demographics.quarantined == 1 and report.identities.balanced and report.demographics.balanced
    for text in (caplog.text, json.dumps(ds.quarantine.to_pylist()), repr(ds)):
        assert "SECRET-TOKEN" not in text


def test_bodies_that_never_become_json_are_per_user_and_bad_gzip_is_retried() -> None:
    import httpx

    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.path)
        token = request.headers["Authorization"].removeprefix("Bearer ")
        if len(served) == 1:  # a body that claims gzip but is not: retried
            return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip at all")
        if request.url.path == "/identities/me":
            body = b'{"id": "u1"' if token == "broken-me" else b'{"id": "' + token.encode() + b'"}'
            return httpx.Response(200, content=body)
        return httpx.Response(200, content=b"{not json" if token == "broken-demographics" else b"{}")

    transport = httpx.MockTransport(handler)
    with KlustrClient("https://gateway.test", retry=FAST_RETRY, transport=transport) as client:
        assert client.user("ok").record is not None and served[:2] == ["/identities/me"] * 2
        me = client.user("broken-me")
        demographics = client.user("broken-demographics")
    assert me.record is None and me.identity_error == "/identities/me kept answering a body that is not JSON"
    assert demographics.record is not None and json.loads(demographics.record)["demographics"] is None
    assert demographics.demographics_error == "/identities/me/demographics kept answering a body that is not JSON"


def test_a_ready_client_is_used_and_progress_counts_every_token(policy: ia.PrivacyPolicy) -> None:
    reports: list[tuple[str, int, int | None]] = []
    with KlustrServer(USERS) as server, KlustrClient(server.url) as client:
        ds = ia.Dataset.from_klustr(client, TOKENS, policy=policy, progress=lambda *r: reports.append(r))
    assert len(ds) > 0
    assert reports[-1][1:] == (len(TOKENS), len(TOKENS))
    assert all(total == len(TOKENS) for *_, total in reports) and not any(t in str(reports) for t in TOKENS)

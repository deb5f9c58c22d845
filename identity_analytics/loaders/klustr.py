"""Klustr identity gateway: per-user identity + demographics, fetched concurrently per token.

Each user token gives ``/identities/me`` and ``/identities/me/demographics`` (a 404 there
means the user has no demographics); the two are joined into one combined record and go
through the same staging and projection as file records. A token the gateway rejects (401,
403), that has no identity (404), that cannot be sent (a control or non-ASCII character;
surrounding whitespace is dropped) or whose identity is not a JSON object (after the
retries, if not JSON at all) is quarantined by its position in the token list, never by its
value, and the pull goes on; so are demographics that are not JSON, the identity kept.
"""

from __future__ import annotations

import collections
import datetime
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import duckdb
import httpx
import numpy as np
import pyarrow as pa

from identity_analytics.contracts import Profile, PublicProfile
from identity_analytics.errors import NotFound, SourceError
from identity_analytics.load_report import LoadReport
from identity_analytics.loaders.http import (
    ApiClient,
    HttpSource,
    InvalidResponse,
    RetryPolicy,
    bearer_credential,
    json_body,
    json_object,
    json_value,
    refuse_redirects,
)
from identity_analytics.loaders.progress import ProgressCallback, reporter
from identity_analytics.loaders.pull import Pull
from identity_analytics.loaders.quarantine import report_bad
from identity_analytics.loaders.redaction import safe_url
from identity_analytics.loaders.staging import StagedSource, StreamSource
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

ME = "/identities/me"
DEMOGRAPHICS = "/identities/me/demographics"
PROFILE = "/identities/me/profile"
PUBLIC_PROFILE = "/identities/public/{user_id}/profile"


@dataclass(frozen=True)
class UserRecord:
    """What one token gave: a combined record text, or why there is none."""

    record: str | None
    identity_error: str | None = None
    demographics_error: str | None = None


class KlustrClient(ApiClient):
    """A client of the Klustr gateway; every call carries one user's bearer token."""

    def __init__(
        self,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        allow_insecure: bool = False,
        max_connections: int = 32,
        transport: httpx.BaseTransport | None = None,
    ):
        self.http = HttpSource(
            base_url, retry=retry, allow_insecure=allow_insecure, max_connections=max_connections, transport=transport
        )

    def user(self, token: str) -> UserRecord:
        """The identity and demographics of the token's user, as one combined record."""
        try:
            token = bearer_credential(token, "token")
        except ValueError as error:
            return UserRecord(None, identity_error=str(error))
        try:
            me = self.http.get(ME, token=token, accept=(401, 403, 404), validate=json_value)
        except InvalidResponse:
            return UserRecord(None, identity_error=f"{ME} kept answering a body that is not JSON")
        refuse_redirects(me)
        if me.status_code != 200:
            return UserRecord(None, identity_error=_refusal(me, ME))
        if not json_body(me).lstrip().startswith(b"{"):
            return UserRecord(None, identity_error=f"{ME} answered JSON that is not an object")
        try:
            demographics = self.http.get(DEMOGRAPHICS, token=token, accept=(204, 401, 403, 404), validate=json_value)
        except InvalidResponse:
            return _combined(me, None)
        refuse_redirects(demographics)
        return _combined(me, demographics)

    def profile(self, token: str) -> Profile:
        """``GET /identities/me/profile`` of the token's user."""
        return Profile.model_validate_json(json_body(self._profile(PROFILE, token)))

    def public_profile(self, user_id: str, token: str) -> PublicProfile:
        """``GET /identities/public/{userId}/profile``; :class:`NotFound` for an unknown user."""
        path = PUBLIC_PROFILE.format(user_id=quote(user_id, safe=""))
        return PublicProfile.model_validate_json(json_body(self._profile(path, token)))

    def _profile(self, path: str, token: str) -> httpx.Response:
        response = self.http.get(path, token=token, accept=(401, 403, 404), validate=json_object)
        refuse_redirects(response)
        if response.status_code == 404:
            raise NotFound(f"no profile at {safe_url(self.http.url(path))}")
        if response.status_code != 200:
            raise SourceError(
                f"{safe_url(self.http.url(path))} answered HTTP {response.status_code} for the token given"
            )
        return response


def _combined(me: httpx.Response, demographics: httpx.Response | None) -> UserRecord:
    """One combined ``{identity, demographics}`` record from the two responses of a user
    (``demographics`` None: its body was not JSON, attempt after attempt). Demographics
    that are JSON but not an object are quarantined by the pipeline, the identity kept."""
    demographics_body, demographics_error = b"null", None
    if demographics is None:
        demographics_error = f"{DEMOGRAPHICS} kept answering a body that is not JSON"
    elif demographics.status_code == 200:
        demographics_body = json_body(demographics).strip() or b"null"  # an empty body: none
    elif demographics.status_code not in (204, 404):
        demographics_error = _refusal(demographics, DEMOGRAPHICS)
    # JSON bodies are UTF-8 (RFC 8259): one decode of the joined bytes, no charset sniffing
    record = b'{"identity": ' + json_body(me) + b', "demographics": ' + demographics_body + b"}"
    return UserRecord(record.decode("utf-8", errors="replace"), None, demographics_error)


def _fetch_in_order(
    client: KlustrClient, tokens: Sequence[str], start: int, concurrency: int, batch: int
) -> Iterator[tuple[int, list[UserRecord]]]:
    """Batches of users in token order, with ``concurrency`` users in flight all along.

    A sliding window of submitted fetches keeps the workers busy while the caller stages a
    batch, so the pipeline never drains at batch boundaries.
    """
    with ThreadPoolExecutor(concurrency, thread_name_prefix="klustr") as pool:
        window: collections.deque[Future[UserRecord]] = collections.deque()
        position = start
        first, users = start, []
        try:
            while True:
                while position < len(tokens) and len(window) < 2 * batch:
                    window.append(pool.submit(client.user, tokens[position]))
                    position += 1
                if not window:
                    break
                users.append(window.popleft().result())
                if len(users) == batch or not window:
                    yield first, users
                    first, users = first + len(users), []
        finally:
            for future in window:
                future.cancel()


def _refusal(response: httpx.Response, path: str) -> str:
    meaning = {401: "token rejected", 403: "access forbidden", 404: "no identity for this token"}
    return f"HTTP {response.status_code} from {path} ({meaning.get(response.status_code, 'refused')})"


def load_klustr(
    con: duckdb.DuckDBPyConnection,
    client: KlustrClient,
    tokens: Sequence[str],
    policy: PrivacyPolicy,
    vocabulary: Vocabulary,
    reference_date: datetime.date,
    *,
    concurrency: int = 16,
    checkpoint: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[LoadReport, pa.Table]:
    """Fetch every token's user (bounded concurrency), stage as combined records, project."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    tokens = list(tokens)
    label = safe_url(client.http.url(ME))
    staged = StagedSource(0, StreamSource(label, "combined"))
    refused = StagedSource(1, StreamSource(safe_url(client.http.url(DEMOGRAPHICS)), "demographics"))
    # The token list is identified by a keyed digest: the checkpoint never holds a token.
    fingerprint = {
        "source": "klustr",
        "url": label,
        "tokens": len(tokens),
        "digest": policy.pseudonym("\n".join(tokens))[:16],
    }
    pull = Pull(con, staged, checkpoint, fingerprint, refused)
    done = pull.position or 0
    advance = reporter(progress, f"users from {label}", len(tokens))
    advance(done)
    for first, users in _fetch_in_order(client, tokens, done, concurrency, max(256, 8 * concurrency)):
        _stage_users(pull, first, users)
        pull.commit(first, first + len(users), first + len(users))
        advance(len(users))
    return pull.finish(policy, vocabulary, reference_date)


def _stage_users(pull: Pull, first: int, users: list[UserRecord]) -> None:
    """Stage one batch of users (token positions ``first + 1 ..``); quarantine what a token gave no record of."""
    staged, refused, log = pull.staged, pull.refused, pull.log
    assert refused is not None
    lines, records = [], []
    for position, user in enumerate(users, first + 1):
        if user.record is None:
            log.add(staged.source.label, position, f"user token #{position}: {user.identity_error}")
            staged.read += 1
            staged.quarantined += 1
            continue
        if user.demographics_error is not None:
            log.add(refused.source.label, position, f"user token #{position}: {user.demographics_error}")
            refused.read += 1
            refused.quarantined += 1
        lines.append(position)
        records.append(user.record)
    if records:
        read, bad = pull.staging.exact_arrow(
            0, pa.array(np.array(lines, dtype=np.int64)), pa.array(records, pa.string()), "combined"
        )
        staged.read += read
        report_bad(log, staged, bad)


__all__ = ["KlustrClient", "UserRecord", "load_klustr"]

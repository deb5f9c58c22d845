"""Ory Kratos admin API: list identities page by page (Link header), get one, list by ids.

``include_credential`` is never sent, and whatever credentials a server returns anyway stay
inside the loader: items go through the same staging and projection as file records, which
never extract them.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from identity_analytics.contracts import Identity
from identity_analytics.errors import NotFound, SourceError
from identity_analytics.load_report import LoadReport
from identity_analytics.loaders.http import (
    ApiClient,
    HttpSource,
    RetryPolicy,
    json_array,
    json_body,
    json_object,
    refuse_redirects,
)
from identity_analytics.loaders.pagination import HeaderLinkPaginator, IdChunkPaginator
from identity_analytics.loaders.progress import ProgressCallback, reporter
from identity_analytics.loaders.pull import Pull
from identity_analytics.loaders.quarantine import report_bad
from identity_analytics.loaders.redaction import safe_url
from identity_analytics.loaders.staging import StagedSource, StreamSource
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

LIST_PATH = "/admin/identities"
MAX_PAGE_SIZE = 500
MAX_IDS_PER_REQUEST = 500
#: Bytes of ``ids`` query per request: request lines stay under the 8-16 KiB most servers accept.
MAX_IDS_QUERY_BYTES = 6000


@dataclass(frozen=True)
class Page:
    """One page of ``GET /admin/identities``: its items (raw JSON objects) and the next URL."""

    items: list[dict[str, Any]]
    next_url: str | None


class KratosClient(ApiClient):
    """A client of the Kratos admin API (bearer API key for Ory Network, none self-hosted)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        allow_insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
    ):
        self.http = HttpSource(base_url, api_key, retry=retry, allow_insecure=allow_insecure, transport=transport)

    def first_page_url(self, page_size: int = 250, organization_id: str | None = None) -> str:
        """The URL of the first page of the identity list."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        params: dict[str, str | int] = {"page_size": page_size}
        if organization_id is not None:
            params["organization_id"] = organization_id
        return str(httpx.URL(self.http.url(LIST_PATH), params=params))

    def pages(
        self, page_size: int = 250, organization_id: str | None = None, start: str | None = None
    ) -> Iterator[Page]:
        """Every page of the identity list, following ``Link: <…>; rel="next"`` until there is none."""
        first = start or self.first_page_url(page_size, organization_id)
        paginator = HeaderLinkPaginator(self.http.url(LIST_PATH), first)
        while paginator.has_next:
            response = self.http.get(paginator.next_request(), validate=json_array)
            _raise_for_status(response)
            paginator.update(response)
            yield Page(json.loads(json_body(response)), paginator.next_url)

    def get(self, identity_id: str) -> Identity:
        """One identity by id; :class:`NotFound` if there is none."""
        response = self.http.get(f"{LIST_PATH}/{quote(identity_id, safe='')}", accept=(404,), validate=json_object)
        if response.status_code == 404:
            raise NotFound(f"no identity {identity_id!r} at {safe_url(self.http.base_url)}")
        _raise_for_status(response)
        return _identity(json.loads(json_body(response)), self.http.url(LIST_PATH))

    def list_by_ids(self, ids: Iterable[str]) -> Iterator[Identity]:
        """The identities with these ids (unknown ids are skipped), in chunks of <= 500 ids per
        request and at most MAX_IDS_QUERY_BYTES of query (common servers refuse longer request lines)."""
        for page in self.id_pages(ids):
            for item in page.items:
                yield _identity(item, self.http.url(LIST_PATH))

    def id_pages(self, ids: Iterable[str]) -> Iterator[Page]:
        """The raw responses of :meth:`list_by_ids`, one page per chunk of ids."""
        for chunk in IdChunkPaginator(ids, MAX_IDS_PER_REQUEST, MAX_IDS_QUERY_BYTES):
            yield self._by_ids(chunk)

    def _by_ids(self, ids: list[str]) -> Page:
        response = self.http.get(LIST_PATH, params=httpx.QueryParams([("ids", i) for i in ids]), validate=json_array)
        _raise_for_status(response)
        return Page(json.loads(json_body(response)), None)


def _identity(item: object, url: str) -> Identity:
    """An identity object of a response; :class:`SourceError` (without its values) if it is not one."""
    try:
        return Identity.model_validate(item)
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(the item)" for e in error.errors()})
        raise SourceError(
            f"{safe_url(url)} answered with an item that is not an identity object (fields: {', '.join(fields)}); "
            "load with Dataset.from_kratos to quarantine such items"
        ) from None


def _raise_for_status(response: httpx.Response) -> None:
    refuse_redirects(response)
    status = response.status_code
    if not 200 <= status < 300:
        hint = " (check the API key)" if status in (401, 403) else ""
        raise SourceError(f"{safe_url(response.url)} answered HTTP {status}{hint}")


def _lines(start: int, count: int) -> pa.Array:
    return pa.array(np.arange(start + 1, start + count + 1, dtype=np.int64))


def load_kratos(
    con: duckdb.DuckDBPyConnection,
    client: KratosClient,
    policy: PrivacyPolicy,
    vocabulary: Vocabulary,
    reference_date: datetime.date,
    *,
    page_size: int = 250,
    organization_id: str | None = None,
    checkpoint: str | Path | None = None,
    progress: ProgressCallback | None = None,
    ids: Sequence[str] | None = None,
) -> tuple[LoadReport, pa.Table]:
    """Pull every identity (or those of ``ids``) into the staging tables, page by page, then project."""
    if ids is not None and (checkpoint is not None or organization_id is not None):
        raise ValueError("ids takes neither checkpoint nor organization_id: it asks for these identities only")
    start_url = client.first_page_url(page_size, organization_id)
    label = safe_url(client.http.url(LIST_PATH))
    pull = Pull(con, StagedSource(0, StreamSource(label, "identity")), checkpoint,
                {"source": "kratos", "url": safe_url(start_url)})  # fmt: skip
    staged = pull.staged
    done = pull.resumed and pull.position is None
    advance = reporter(progress, f"identities from {label}")
    advance(staged.read)
    if ids is not None:
        pages = client.id_pages(ids)
    else:
        pages = iter(()) if done else client.pages(page_size, organization_id, start=pull.position)
    for page in pages:
        first = staged.read
        texts = pa.array([json.dumps(item) for item in page.items], pa.string())
        read, bad = pull.staging.exact_arrow(0, _lines(first, len(texts)), texts, "identity")
        staged.read += read
        report_bad(pull.log, staged, bad)
        pull.commit(first, staged.read, page.next_url, complete=page.next_url is None)
        advance(len(texts))
    return pull.finish(policy, vocabulary, reference_date)

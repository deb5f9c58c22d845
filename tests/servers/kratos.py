"""A fake Ory Kratos admin API: ``GET /admin/identities`` (keyset pagination) and ``/admin/identities/{id}``."""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlencode

from ._http import FakeServer, RecordedRequest, Response, ory_error
from .faults import DUPLICATE, Faults

DEFAULT_PAGE_SIZE = 250
MAX_PAGE_SIZE = 500
MAX_IDS = 500
LIST_PATH = "/admin/identities"
_ID_NAMESPACE = uuid.UUID("6f0c5a1e-2b7d-4d43-9a55-4b1f1e0c9a11")
_MALFORMED = "The request was malformed or contained invalid parameters"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def identity_key(identity: Any) -> str:
    """The id an identity is ordered and looked up by (non-string ids by their JSON text)."""
    raw = identity.get("id") if isinstance(identity, dict) else identity
    return raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)


def with_id(identity: Any, ordinal: int) -> Any:
    """``identity`` with a deterministic uuid-like ``id`` when it has none (missing, null or empty)."""
    if not isinstance(identity, dict) or identity.get("id") not in (None, ""):
        return identity
    content = json.dumps(identity, sort_keys=True, default=str)
    return {**identity, "id": str(uuid.uuid5(_ID_NAMESPACE, f"{ordinal}:{content}"))}


def declassified(identity: Any) -> Any:
    """``identity`` as Kratos returns it without ``include_credential``: credentials lose their ``config``."""
    if not isinstance(identity, dict) or not isinstance(identity.get("credentials"), dict):
        return identity
    credentials = {
        kind: {k: v for k, v in cred.items() if k != "config"} if isinstance(cred, dict) else cred
        for kind, cred in identity["credentials"].items()
    }
    return {**identity, "credentials": credentials}


def encode_page_token(key: str, ordinal: int) -> str:
    """Opaque keyset cursor: url-safe base64 of the last served (id, position)."""
    return base64.urlsafe_b64encode(_dumps([key, ordinal])).rstrip(b"=").decode("ascii")


def decode_page_token(token: str) -> tuple[str, int]:
    """Inverse of :func:`encode_page_token`; raises ``ValueError`` on anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key, ordinal = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("invalid page token") from exc
    if not isinstance(key, str) or not isinstance(ordinal, int):
        raise ValueError("invalid page token")
    return key, ordinal


@dataclass(frozen=True)
class _Entry:
    key: str
    ordinal: int
    identity: Any
    full: bytes
    public: bytes
    organization_id: Any


class KratosServer(FakeServer):
    """Fake Kratos admin API serving ``identities`` (a snapshot taken at construction).

    - ``GET /admin/identities``: ordered by id; ``page_size`` (1..500, default 250, else 400), opaque
      ``page_token``; ``Link`` header with ``rel="first"`` and, unless on the last page, ``rel="next"``
      (relative like Kratos, or absolute with ``link_style="absolute"``; other query parameters are kept);
      ``organization_id`` filter; ``ids`` (repeatable, > 500 -> 400, unknown ignored, no pagination).
    - ``GET /admin/identities/{id}``: the identity, or a 404 Kratos error.
    - Credentials lose their ``config`` (where the secrets are) unless ``include_credential`` is present in
      the query, in which case the full credentials are returned (so tests can prove a client never asks).
    - With ``api_key``, every request needs ``Authorization: Bearer <api_key>``, else 401.
    - Identities without an ``id`` get a deterministic uuid-like one (see :func:`with_id`).
    """

    def __init__(
        self,
        identities: Iterable[Any],
        api_key: str | None = None,
        faults: Faults | None = None,
        link_style: Literal["relative", "absolute"] = "relative",
    ) -> None:
        super().__init__(faults)
        if link_style not in ("relative", "absolute"):
            raise ValueError(f"link_style must be 'relative' or 'absolute', not {link_style!r}")
        self.api_key = api_key
        self.link_style = link_style
        entries = []
        for ordinal, raw in enumerate(identities):
            identity = with_id(raw, ordinal)
            org = identity.get("organization_id") if isinstance(identity, dict) else None
            entries.append(
                _Entry(identity_key(identity), ordinal, identity, _dumps(identity), _dumps(declassified(identity)), org)
            )
        entries.sort(key=lambda e: (e.key, e.ordinal))
        self._entries: list[_Entry] = entries
        self._by_id: dict[str, _Entry] = {}
        for entry in entries:
            self._by_id.setdefault(entry.key, entry)

    @property
    def identities(self) -> list[Any]:
        """Served identities in list order (with the ids assigned to id-less ones)."""
        return [e.identity for e in self._entries]

    def error(self, status: int, message: str) -> Response:
        """Kratos error body."""
        return ory_error(status, message)

    def route(self, request: RecordedRequest) -> Response:
        """Auth, then list / get / 404."""
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            response = ory_error(401, "The request could not be authorized", "Missing or invalid API key.")
            response.headers.append(("WWW-Authenticate", 'Bearer realm="kratos-admin"'))
            return response
        path = request.path
        if path in (LIST_PATH, LIST_PATH + "/"):
            return self._list(request)
        if path.startswith(LIST_PATH + "/"):
            identity_id = path[len(LIST_PATH) + 1 :]
            if identity_id and "/" not in identity_id:
                return self._get(request, unquote(identity_id))
        return ory_error(404, "The requested resource could not be found", f"No route for {path}.")

    def _get(self, request: RecordedRequest, identity_id: str) -> Response:
        entry = self._by_id.get(identity_id)
        if entry is None:
            return ory_error(404, "Unable to locate the resource", f"Identity {identity_id!r} does not exist.")
        body = entry.full if "include_credential" in request.query else entry.public
        return Response(200, body)

    def _list(self, request: RecordedRequest) -> Response:
        query = request.query
        size = DEFAULT_PAGE_SIZE
        if "page_size" in query:
            raw = query["page_size"][0]
            try:
                size = int(raw)
            except ValueError:
                return ory_error(400, _MALFORMED, f"page_size must be an integer, got {raw!r}.")
            if not 1 <= size <= MAX_PAGE_SIZE:
                return ory_error(400, _MALFORMED, f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {size}.")
        include = "include_credential" in query
        entries = self._entries
        org = query.get("organization_id", [""])[0]
        if org:
            entries = [e for e in entries if e.organization_id == org]

        if "ids" in query:
            ids = query["ids"]
            if len(ids) > MAX_IDS:
                return ory_error(400, _MALFORMED, f"at most {MAX_IDS} ids may be requested, got {len(ids)}.")
            wanted = set(ids)
            return Response(200, self._page_body((e for e in entries if e.key in wanted), include))

        start = 0
        token = query.get("page_token", [""])[0]
        if token:
            try:
                cursor = decode_page_token(token)
            except ValueError:
                return ory_error(400, _MALFORMED, "page_token is invalid.")
            start = bisect.bisect_right(entries, cursor, key=lambda e: (e.key, e.ordinal))
        page = entries[start : start + size]
        has_next = start + size < len(entries)
        if self.faults.duplicate_across_pages and start > 0:
            page = [entries[start - 1], *page]
            self.count_fault(DUPLICATE)
        next_token = encode_page_token(page[-1].key, page[-1].ordinal) if has_next else None
        return Response(200, self._page_body(page, include), [("Link", self._link(request, size, next_token))])

    @staticmethod
    def _page_body(entries: Iterable[_Entry], include: bool) -> bytes:
        return b"[" + b",".join(e.full if include else e.public for e in entries) + b"]"

    def _link(self, request: RecordedRequest, size: int, next_token: str | None) -> str:
        """Kratos-style ``Link``: ``<...>; rel="first",<...>; rel="next"`` (query keys sorted, as Go does)."""

        def one(token: str | None, rel: str) -> str:
            params = {k: v for k, v in request.query.items() if k not in ("page_size", "page_token")}
            params["page_size"] = [str(size)]
            if token:
                params["page_token"] = [token]
            target = f"{LIST_PATH}?{urlencode([(k, v) for k in sorted(params) for v in params[k]])}"
            if self.link_style == "absolute":
                target = self.url + target
            return f'<{target}>; rel="{rel}"'

        links = [one(None, "first")]
        if next_token:
            links.append(one(next_token, "next"))
        return ",".join(links)


def _read_ndjson(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each parseable non-blank line; broken lines are skipped."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError:
                continue


def _updated_at(identity: dict[str, Any]) -> tuple[bool, dt.datetime]:
    raw = identity.get("updated_at")
    try:
        parsed = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        return False, dt.datetime.min.replace(tzinfo=dt.UTC)
    return True, parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def kratos_identities_from_fixtures(
    path: str | Path, limit: int | None = None, dedupe: bool = True
) -> list[dict[str, Any]]:
    """Identities from an NDJSON fixture, as a Kratos instance holding them would.

    Unparseable lines and non-object records are skipped; id-less records get a deterministic id
    (:func:`with_id`, numbered by line); odd ids (e.g. numbers) are kept to exercise client validation.
    With ``dedupe`` only the latest version of each id survives (latest ``updated_at``, ties: the later
    line), the library's own rule. ``limit`` keeps the first records (file order) after that.
    """
    records: list[tuple[int, dict[str, Any]]] = [
        (number, with_id(value, number)) for number, value in _read_ndjson(path) if isinstance(value, dict)
    ]
    if dedupe:
        best: dict[str, tuple[int, dict[str, Any]]] = {}
        for number, record in records:
            key = identity_key(record)
            kept = best.get(key)
            if kept is None or _updated_at(record) >= _updated_at(kept[1]):
                best[key] = (number, record)
        records = sorted(best.values(), key=lambda item: item[0])
    identities = [record for _, record in records]
    return identities if limit is None else identities[:limit]

"""Pagination as small strategy objects (in the manner of dlt's REST client): a paginator
says what to ask next and reads each response to update itself; the client runs the loop.

* :class:`HeaderLinkPaginator` follows ``Link: <…>; rel="next"`` (Kratos' identity list).
* :class:`IdChunkPaginator` splits a list of ids into request-sized chunks (``?ids=`` filters).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import quote, urlsplit

import httpx

from identity_analytics.errors import SourceError
from identity_analytics.loaders.redaction import safe_url


class HeaderLinkPaginator:
    """Pages of one list URL, following the ``rel="next"`` link of each response until there
    is none. Only the link's query is taken (page_token, page_size, ...): the next request goes
    to ``list_url`` itself, so a base path is kept and credentials never follow a link to another
    origin. A URL asked twice means the server's pagination loops: refused."""

    def __init__(self, list_url: str, start: str) -> None:
        self.list_url = list_url
        self.next_url: str | None = start
        self._seen: set[str] = set()

    @property
    def has_next(self) -> bool:
        return self.next_url is not None

    def next_request(self) -> str:
        """The URL to ask next (call while :attr:`has_next`)."""
        url = self.next_url
        if url is None:
            raise ValueError("no next page: the last response had no rel=\"next\" link")
        if url in self._seen:
            raise SourceError(f"{safe_url(url)} was already read: the server's pagination loops")
        self._seen.add(url)
        return url

    def update(self, response: httpx.Response) -> None:
        """Read where the next page is from ``response``."""
        link = next_link(response)
        self.next_url = f"{self.list_url}?{urlsplit(link).query}" if link is not None else None


class IdChunkPaginator:
    """Chunks of ``ids`` for ``?ids=`` requests: at most ``max_ids`` ids and ``max_query_bytes``
    of query each (common servers refuse request lines past 8-16 KiB)."""

    def __init__(self, ids: Iterable[str], max_ids: int, max_query_bytes: int) -> None:
        self.ids = ids
        self.max_ids = max_ids
        self.max_query_bytes = max_query_bytes

    def __iter__(self) -> Iterator[list[str]]:
        chunk: list[str] = []
        size = 0
        for identity_id in self.ids:
            length = len("&ids=") + len(quote(identity_id, safe=""))
            if chunk and (len(chunk) == self.max_ids or size + length > self.max_query_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(identity_id)
            size += length
        if chunk:
            yield chunk


def next_link(response: httpx.Response) -> str | None:
    """The target of the ``Link`` header's ``rel="next"`` (RFC 8288: rel names are
    case-insensitive and a rel value may list several, e.g. ``rel="prev next"``)."""
    for header in response.headers.get_list("link"):
        for value in _split_outside(header, ","):
            target, _, params = value.strip().partition(">")
            if not target.startswith("<"):
                continue
            for param in _split_outside(params, ";"):
                name, _, raw = param.partition("=")
                rels = raw.strip().strip('"').lower().split()
                if name.strip().lower() == "rel" and "next" in rels:
                    return target[1:].strip()
    return None


def _split_outside(text: str, separator: str) -> list[str]:
    """``text`` split on ``separator`` where it stands outside ``<...>`` and ``"..."``."""
    parts: list[str] = []
    current: list[str] = []
    quoted = bracketed = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"' and not bracketed:
            quoted = not quoted
        elif char in "<>" and not quoted:
            bracketed = char == "<"
        elif char == separator and not quoted and not bracketed:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts

"""Paginators: the Link header followed on the list URL only, loops refused, id chunks sized."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from identity_analytics.errors import SourceError
from identity_analytics.loaders.pagination import HeaderLinkPaginator, IdChunkPaginator, next_link

LIST = "https://kratos.example/base/admin/identities"


def _response(link: str | None) -> httpx.Response:
    return httpx.Response(200, headers={"link": link} if link else {}, json=[])


def test_the_next_page_is_asked_of_the_list_url_with_the_links_query_only() -> None:
    paginator = HeaderLinkPaginator(LIST, f"{LIST}?page_size=2")
    assert paginator.next_request() == f"{LIST}?page_size=2"
    paginator.update(_response('<https://elsewhere.example/steal?page_token=b&page_size=2>; rel="next"'))
    assert paginator.next_url == f"{LIST}?page_token=b&page_size=2"  # never the other origin
    assert paginator.next_request() == f"{LIST}?page_token=b&page_size=2"
    paginator.update(_response('<https://kratos.example/x?page_token=a>; rel="first"'))
    assert not paginator.has_next


def test_a_pagination_that_loops_is_refused_naming_the_url_without_secrets() -> None:
    paginator = HeaderLinkPaginator(LIST, f"{LIST}?page_token=a&token=s3cret")
    paginator.next_request()
    paginator.update(_response(f'<{LIST}?page_token=a&token=s3cret>; rel="next"'))
    with pytest.raises(SourceError, match="already read") as error:
        paginator.next_request()
    assert "s3cret" not in str(error.value)


def test_rel_values_are_case_insensitive_and_may_list_several() -> None:
    assert next_link(_response('<https://a/?p=1>; rel="prev", <https://a/?p=3>; REL="Last Next"')) == "https://a/?p=3"
    assert next_link(_response(None)) is None


def test_id_chunks_respect_both_the_id_count_and_the_query_length() -> None:
    ids = [f"id-{i:04d}" for i in range(23)]
    chunks = list(IdChunkPaginator(ids, max_ids=5, max_query_bytes=10_000))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3] and [i for c in chunks for i in c] == ids
    long = ["é" * 40 for _ in range(10)]  # 240 bytes each once quoted
    chunks = list(IdChunkPaginator(long, max_ids=500, max_query_bytes=1000))
    assert all(sum(len("&ids=") + len(quote(i, safe="")) for i in c) <= 1000 for c in chunks)
    assert sum(len(c) for c in chunks) == 10 and len(chunks) == 3
    assert list(IdChunkPaginator([], 5, 100)) == []

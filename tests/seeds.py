"""The example payloads of the seed documents, parsed from the text as published."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import REFERENCE


def klustr_payloads() -> dict[str, Any]:
    """Response body of each Klustr endpoint in ``seeds/klustr-identity-apis.txt``, by path."""
    text = (REFERENCE / "seeds" / "klustr-identity-apis.txt").read_text("utf-8")
    decoder = json.JSONDecoder()
    payloads: dict[str, Any] = {}
    for match in re.finditer(r"GET (\S+) HTTP/1\.1.*?Accept: \*/\*\n", text, re.S):
        payloads[match.group(1)], _ = decoder.raw_decode(text, match.end())
    return payloads


def kratos_get_identity() -> dict[str, Any]:
    """Response body of Kratos ``GET /admin/identities/{id}`` in the seed document."""
    text = (REFERENCE / "seeds" / "kratos-admin-get-identity.txt").read_text("utf-8")
    value, _ = json.JSONDecoder().raw_decode(text, text.index('{"id"'))
    return value  # type: ignore[no-any-return]


def kratos_snapshots() -> dict[str, Any]:
    return {
        p.stem: json.loads(p.read_text("utf-8")) for p in sorted((REFERENCE / "kratos" / "snapshots").glob("*.json"))
    }

"""A fake Klustr identity gateway: ``/identities/me[/demographics|/profile]`` and public profiles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ._http import FakeServer, RecordedRequest, Response, json_response, ory_error
from .faults import Faults
from .kratos import _read_ndjson, identity_key, kratos_identities_from_fixtures

ME = "/identities/me"
PUBLIC_PREFIX = "/identities/public/"


def token_for(n: int) -> str:
    """The deterministic bearer token of the n-th fixture user (contains ``SECRET-TOKEN`` to grep logs)."""
    return f"token-{n}-SECRET-TOKEN-{n}"


def _profile(identity: Mapping[str, Any]) -> dict[str, Any]:
    return {"traits": identity.get("traits"), "metadata_public": identity.get("metadata_public")}


def _is_active(identity: Mapping[str, Any]) -> bool:
    """Kratos defaults the state to active; anything else (inactive, deleted, ...) is hidden."""
    return (identity.get("state") or "active") == "active"


class KlustrServer(FakeServer):
    """Fake Klustr gateway.

    ``users`` maps a bearer token to ``{"identity": {...}, "demographics": {...} | None}``; tokens in
    ``forbidden_tokens`` get 403, unknown or missing tokens 401 (with ``WWW-Authenticate``).

    - ``GET /identities/me``: the identity verbatim, credentials and ``metadata_admin`` included (the gateway
      returns them; a client must drop them).
    - ``GET /identities/me/demographics``: the demographics, or 404 when the user has none.
    - ``GET /identities/me/profile``: ``{"traits", "metadata_public"}``.
    - ``GET /identities/public/{userId}/profile``: that user's profile for any valid token; 404 when the id is
      unknown or the identity is not active.
    """

    def __init__(
        self,
        users: Mapping[str, Mapping[str, Any]],
        faults: Faults | None = None,
        forbidden_tokens: Iterable[str] = (),
    ) -> None:
        super().__init__(faults)
        self.users: dict[str, dict[str, Any]] = {
            token: {"identity": user.get("identity"), "demographics": user.get("demographics")}
            for token, user in users.items()
        }
        self.forbidden_tokens = set(forbidden_tokens)
        self._by_id: dict[str, dict[str, Any]] = {}
        for user in self.users.values():
            identity = user["identity"]
            if isinstance(identity, dict):
                self._by_id.setdefault(identity_key(identity), identity)

    def error(self, status: int, message: str) -> Response:
        """Gateway error body (Ory format)."""
        return ory_error(status, message)

    def route(self, request: RecordedRequest) -> Response:
        """Authenticate the bearer token, then dispatch."""
        auth = request.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self._unauthorized("Missing bearer token.")
        if token in self.forbidden_tokens:
            return ory_error(403, "The requested action was forbidden", "This token may not access identities.")
        user = self.users.get(token)
        if user is None:
            return self._unauthorized("The bearer token is invalid or expired.")

        path = request.path.rstrip("/") or "/"
        identity = user["identity"] or {}
        if path == ME:
            return json_response(200, identity)
        if path == ME + "/demographics":
            if user["demographics"] is None:
                return ory_error(404, "Unable to locate the resource", "No demographics for this identity.")
            return json_response(200, user["demographics"])
        if path == ME + "/profile":
            return json_response(200, _profile(identity))
        if path.startswith(PUBLIC_PREFIX) and path.endswith("/profile"):
            user_id = unquote(path[len(PUBLIC_PREFIX) : -len("/profile")])
            if user_id and "/" not in user_id:
                target = self._by_id.get(user_id)
                if target is None or not _is_active(target):
                    return ory_error(404, "Unable to locate the resource", "No public profile for this user.")
                return json_response(200, _profile(target))
        return ory_error(404, "The requested resource could not be found", f"No route for {request.path}.")

    @staticmethod
    def _unauthorized(reason: str) -> Response:
        response = ory_error(401, "The request could not be authorized", reason)
        response.headers.append(("WWW-Authenticate", 'Bearer error="invalid_token"'))
        return response


def users_from_fixtures(
    identities_path: str | Path, demographics_path: str | Path, limit: int | None = None
) -> dict[str, dict[str, Any]]:
    """Users for :class:`KlustrServer` from the NDJSON fixtures, keyed by :func:`token_for` (n = 0, 1, ...).

    Identities are read as :func:`kratos_identities_from_fixtures` does (deduplicated, ids assigned).
    Demographics are joined on ``identity_id`` (the last parseable row wins; the key is dropped, as the
    gateway's payload has none); users without a row get ``None``.
    """
    demographics: dict[str, dict[str, Any]] = {}
    for _, row in _read_ndjson(demographics_path):
        if isinstance(row, dict) and "identity_id" in row:
            key = identity_key({"id": row["identity_id"]})
            demographics[key] = {k: v for k, v in row.items() if k != "identity_id"}
    identities = kratos_identities_from_fixtures(identities_path, limit=limit)
    return {
        token_for(n): {"identity": identity, "demographics": demographics.get(identity_key(identity))}
        for n, identity in enumerate(identities)
    }

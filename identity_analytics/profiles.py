"""Profile views served from the loaded data: the owner's profile and the public profile.

Both have the JSON shape of the Klustr APIs key for key (``traits`` with every Klustr trait
key, ``metadata_public`` with ``picture``). A public profile shows only the fields the policy
marks public (default: name, username, picture); the other keys stay, with null values, so
clients still parse them. Inactive identities (any state but active or absent) have no public
profile. Unknown ids raise :class:`NotFound`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from identity_analytics.contracts import PROFILE_METADATA_KEYS, PROFILE_TRAIT_KEYS, Profile, PublicProfile
from identity_analytics.errors import NotFound
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.schema import PROFILE_TABLE

#: States whose identities have a public profile (absent means active, as in Kratos).
PUBLIC_STATES = ("active", None)

_NAME = pa.struct([("given_name", pa.string()), ("family_name", pa.string()), ("middle_name", pa.string())])
PROFILE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("found", pa.bool_()),
        (
            "traits",
            pa.struct(
                [("name", _NAME), *[(k, pa.string()) for k in PROFILE_TRAIT_KEYS if k != "name"]],
            ),
        ),
        ("metadata_public", pa.struct([(k, pa.string()) for k in PROFILE_METADATA_KEYS])),
    ]
)


def _loads(value: Any) -> dict[str, Any]:
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {}


class ProfileStore:
    """Profile views over a Dataset's profile store (traits and metadata_public by identity id)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, policy: PrivacyPolicy):
        self._con = con.cursor()  # its own connection to the same database: safe beside other threads
        self._policy = policy

    def _rows(self, ids: Sequence[str]) -> dict[str, tuple[Any, Any, Any]]:
        if not ids:
            return {}
        rows = self._con.execute(
            f"SELECT id, state, traits, metadata_public FROM {PROFILE_TABLE} WHERE id IN (SELECT unnest($ids))",
            {"ids": list(ids)},
        ).fetchall()
        return {r[0]: r[1:] for r in rows}

    def _raw(self, identity_id: str) -> tuple[Any, Any, Any]:
        row = self._rows([identity_id]).get(identity_id)
        if row is None:
            raise NotFound(f"no identity {identity_id!r} in this dataset's profile store")
        return row

    def get(self, identity_id: str) -> Profile:
        """The identity's profile (``GET /identities/me/profile`` shape)."""
        _, traits, metadata = self._raw(identity_id)
        return Profile.model_validate({"traits": _loads(traits), "metadata_public": _loads(metadata)})

    def public(self, identity_id: str) -> PublicProfile:
        """The public profile (``GET /identities/public/{userId}/profile`` shape) under the visibility policy."""
        state, traits, metadata = self._raw(identity_id)
        if state not in PUBLIC_STATES:
            raise NotFound(f"identity {identity_id!r} has no public profile (it is not active)")
        return self._public(_loads(traits), _loads(metadata))

    def _public(self, traits: dict[str, Any], metadata: dict[str, Any]) -> PublicProfile:
        """Every key of the profile, its value kept only when the policy makes it public: a
        client parses the public profile as it parses the profile (keys of other schemas too)."""
        public = self._policy.public_fields
        shown_traits = {k: (v if k in public else None) for k, v in traits.items()}
        shown_metadata = {k: (v if k in public else None) for k, v in metadata.items()}
        return PublicProfile.model_validate({"traits": shown_traits, "metadata_public": shown_metadata})

    def table(self, ids: Sequence[str], public: bool = False) -> pa.Table:
        """Profiles of many ids as Arrow (``id``, ``found``, ``traits``, ``metadata_public``), in the order given.

        Unknown ids (and, with ``public=True``, inactive identities) get ``found = False`` and
        null profiles. Only the Klustr trait keys are columns; use :meth:`get` for others.
        """
        rows = self._rows(ids)
        records = []
        for identity_id in ids:
            row = rows.get(identity_id)
            if row is None or (public and row[0] not in PUBLIC_STATES):
                records.append({"id": identity_id, "found": False, "traits": None, "metadata_public": None})
                continue
            traits, metadata = _loads(row[1]), _loads(row[2])
            profile: Profile = (
                self._public(traits, metadata)
                if public
                else Profile.model_validate({"traits": traits, "metadata_public": metadata})
            )
            data = profile.to_json_dict()
            name = data["traits"].get("name")
            data["traits"]["name"] = name if isinstance(name, dict) else None
            records.append(
                {
                    "id": identity_id,
                    "found": True,
                    "traits": {k: data["traits"].get(k) for k in PROFILE_TRAIT_KEYS},
                    "metadata_public": {k: data["metadata_public"].get(k) for k in PROFILE_METADATA_KEYS},
                }
            )
        return pa.Table.from_pylist(records, schema=PROFILE_SCHEMA)

    def __len__(self) -> int:
        return int(self._con.execute(f"SELECT count(*) FROM {PROFILE_TABLE}").fetchall()[0][0])

    def __repr__(self) -> str:
        return f"ProfileStore({len(self):,} profiles)"

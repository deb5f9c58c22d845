"""Deterministic generator of large synthetic Kratos/Klustr identity exports.

Used by the benchmarks (``bench/``) and large-input tests. The output follows the API
contracts in the identity objects Kratos returns: credentials of several types (with
planted secrets that must never reach any output), Klustr traits, metadata_public and
metadata_admin, plus a demographics file joined on ``identity_id``.

    python data/generate.py --identities 200000 --out /tmp/gen            # two NDJSON files
    python data/generate.py --identities 700000 --out /tmp/gen --gzip     # gzip-compressed
    python data/generate.py --target-bytes 1.1e9 --out /tmp/big           # ~1.1 GB of identities
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

AGE_BANDS = ["_0_to_14", "_15_to_24", "_25_to_34", "_35_to_44", "_45_to_54", "_55_to_64", "_65_plus"]
INCOMES = ["none", "low", "lower_middle", "middle", "upper_middle", "high"]
GENDERS = ["male", "female", "non_binary", "other"]
RELATIONSHIPS = ["single", "in_relationship", "married", "divorced", "widowed"]
COUNTRIES = ["US", "GB", "DE", "FR", "NG", "KE", "IN", "BR", "JP", "CA", "ZA", "MX"]
LOCALES = ["en", "en-US", "en-GB", "de-DE", "fr-FR", "pt-BR", "ja-JP", "sw-KE", "es-MX", "fr"]
GIVEN = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Tim"]
FAMILY = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson"]

#: Secrets planted in every generated record; tests assert they never appear in any output.
PLANTED_PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$PLANTEDSALT$PLANTEDHASHVALUE000000000000"
PLANTED_TOKEN_PREFIX = "planted-oidc-access-token-"
PLANTED_ADMIN_PREFIX = "planted-person-id-"


def _timestamp(rng: random.Random, year_from: int = 2019) -> str:
    return (
        f"{rng.randint(year_from, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.000Z"
    )


def identity_record(rng: random.Random, index: int) -> dict[str, Any]:
    """One identity shaped like Kratos ``GET /admin/identities/{id}`` with Klustr traits."""
    identity_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    email = f"{given.lower()}.{family.lower()}{index}@example.org"
    birth = f"{rng.randint(1940, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    created = _timestamp(rng)
    return {
        "id": identity_id,
        "schema_id": "klustr",
        "schema_url": "https://identity.example.org/schemas/klustr",
        "state": "active" if rng.random() < 0.95 else "inactive",
        "state_changed_at": created,
        "created_at": created,
        "updated_at": _timestamp(rng, 2024),
        "organization_id": None,
        "external_id": f"ext-{index}",
        "credentials": {
            "password": {
                "type": "password",
                "identifiers": [email],
                "config": {"hashed_password": PLANTED_PASSWORD_HASH},
                "version": 1,
                "created_at": created,
                "updated_at": created,
            },
            "oidc": {
                "type": "oidc",
                "identifiers": [f"google:{index}"],
                "config": {
                    "providers": [
                        {
                            "subject": str(index),
                            "provider": "google",
                            "initial_access_token": f"{PLANTED_TOKEN_PREFIX}{index}",
                            "initial_refresh_token": f"planted-refresh-{index}",
                            "initial_id_token": f"planted-id-token-{index}",
                        }
                    ]
                },
                "version": 0,
                "created_at": created,
                "updated_at": created,
            },
        },
        "traits": {
            "name": {"given_name": given, "family_name": family, "middle_name": ""},
            "birthdate": birth,
            "email": email,
            "username": f"{given.lower()}{index}",
            "gender": rng.choice(GENDERS),
            "citizenship": rng.choice(COUNTRIES),
            "locale": rng.choice(LOCALES),
        },
        "verifiable_addresses": [
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "value": email,
                "verified": True,
                "via": "email",
                "status": "completed",
                "verified_at": created,
            }
        ],
        "recovery_addresses": [
            {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "value": email, "via": "email"}
        ],
        "metadata_public": {"picture": f"https://cdn.example.org/avatars/{index}.png"},
        "metadata_admin": {"person_id": f"{PLANTED_ADMIN_PREFIX}{index}"},
    }


def demographics_record(rng: random.Random, identity_id: str) -> dict[str, Any]:
    """Demographics shaped like Klustr ``GET /identities/me/demographics`` plus ``identity_id``."""
    return {
        "identity_id": identity_id,
        "age": rng.choice(AGE_BANDS),
        "income": rng.choice(INCOMES),
        "gender": rng.choice(GENDERS),
        "household": rng.random() < 0.6,
        "relationship_status": rng.choice(RELATIONSHIPS),
        "parental_status": "parent" if rng.random() < 0.4 else "not_parent",
    }


def generate(seed: int = 7) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Endless deterministic stream of (identity, demographics or None)."""
    rng = random.Random(seed)
    index = 0
    while True:
        identity = identity_record(rng, index)
        demo = demographics_record(rng, identity["id"]) if rng.random() < 0.8 else None
        yield identity, demo
        index += 1


def _open(path: Path, compress: bool) -> IO[str]:
    if compress:
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=1)
    return path.open("w", encoding="utf-8")


def write_files(
    out: Path, identities: int | None, target_bytes: float | None, compress: bool, seed: int
) -> tuple[Path, Path, int]:
    """Write ``identities.ndjson`` and ``demographics.ndjson`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".ndjson.gz" if compress else ".ndjson"
    ids_path, demo_path = out / f"identities{suffix}", out / f"demographics{suffix}"
    written, count = 0, 0
    with _open(ids_path, compress) as ids_file, _open(demo_path, compress) as demo_file:
        for identity, demo in generate(seed):
            if identities is not None and count >= identities:
                break
            if target_bytes is not None and written >= target_bytes:
                break
            line = json.dumps(identity, separators=(",", ":")) + "\n"
            ids_file.write(line)
            written += len(line)
            if demo is not None:
                demo_file.write(json.dumps(demo, separators=(",", ":")) + "\n")
            count += 1
    return ids_path, demo_path, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=None, help="number of identities")
    parser.add_argument("--target-bytes", type=float, default=None, help="stop at this many bytes")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--gzip", action="store_true", help="gzip the output files")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.identities is None and args.target_bytes is None:
        parser.error("give --identities or --target-bytes")
    ids_path, demo_path, count = write_files(args.out, args.identities, args.target_bytes, args.gzip, args.seed)
    print(f"{count} identities -> {ids_path} ({ids_path.stat().st_size / 1e6:.1f} MB), {demo_path}")


if __name__ == "__main__":
    main()

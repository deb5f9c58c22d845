"""Fake Kratos admin and Klustr gateway HTTP servers (127.0.0.1, background threads) with fault injection."""

from ._http import RecordedRequest
from .faults import Faults
from .klustr import KlustrServer, token_for, users_from_fixtures
from .kratos import KratosServer, kratos_identities_from_fixtures

__all__ = [
    "Faults",
    "KlustrServer",
    "KratosServer",
    "RecordedRequest",
    "kratos_identities_from_fixtures",
    "token_for",
    "users_from_fixtures",
]

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from identity_analytics.loaders.redaction import KNOWN_KEYS, MAX_EXCERPT_CHARS, redact_text, redact_value


def test_parsed_records_keep_shape_and_known_keys_only() -> None:
    record = {
        "id": "abc",
        "traits": {"email": "a@b.c", "weird_key": 5},
        "credentials": {"password": {"config": "x"}},
        "metadata_admin": {"k": "v"},
    }
    assert redact_value(record) == '{"id":"…","traits":{"email":"…","…":…}}'


def test_malformed_text_masks_strings_including_unterminated_ones() -> None:
    excerpt = redact_text('{"id": "abc", "credentials": {"password": {"config": {"hashed_password": "$argon2id$secret')
    assert "secret" not in excerpt and "abc" not in excerpt and "argon" not in excerpt
    assert excerpt.startswith('{"id": "…", "credentials": {"…": {"…": {"…": "…"')


def test_bare_words_and_numbers_are_masked() -> None:
    assert redact_text("{id: secret123, n: 42, ok: true") == "{…: …, …: …, …: true"


@given(prefix=st.text(max_size=60), secret=st.from_regex(r"[A-Za-z0-9$]{8,24}", fullmatch=True))
def test_a_planted_value_never_survives_redaction(prefix: str, secret: str) -> None:
    assume(secret not in KNOWN_KEYS and secret not in prefix)
    for text in (
        f'{prefix}"{secret}"',
        f"{prefix} {secret}",
        f'{prefix}{{"config": "{secret}',
        f'{{"id": "{secret}"}}',
    ):
        excerpt = redact_text(text)
        assert secret not in excerpt
        assert len(excerpt) <= MAX_EXCERPT_CHARS


@pytest.mark.parametrize(
    "text",
    [
        "Иван,Петров,ivan.petrov@example.com,+7 916 123-45-67",
        '{"id": "a", "traits": {"name": {"given_name": José María}}}',
        "{'id': 'c', 'traits': {'email': 'Zoë@exämple.org'}}",
        '{"id": "b", "traits": {"email": Zoë@exämple.org, "x": [1, two]}',
    ],
)
def test_malformed_text_masks_values_of_any_script(text: str) -> None:
    excerpt = redact_text(text)
    for secret in ("Иван", "Петров", "ivan", "916", "José", "María", "Zoë", "exämple", "two"):
        assert secret not in excerpt
    assert excerpt.count("…") >= 2

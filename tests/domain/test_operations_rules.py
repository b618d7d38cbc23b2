"""The domain's operations rules: escaping, tenants, Idempotency-Key decisions."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.errors import IdempotencyKeyReused, InvalidRequest
from nanobot_api.domain.idempotency import (
    Claimed,
    Running,
    StoredAnswer,
    check_idempotency_key,
    decide,
    fingerprint,
)
from nanobot_api.domain.sessions import SessionKey, api_session
from nanobot_api.domain.tenants import DEFAULT_TENANT, Tenant
from nanobot_api.domain.text import printable

key_names = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
session_ids = st.text(min_size=1, max_size=40).filter(str.isprintable)


@given(st.text())
def test_escaped_text_is_printable_one_line_and_keeps_printable_text(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text


@given(st.text(), st.sampled_from(["\n", "\r", "\x1b", "\u2028", "\u202e"]))
def test_a_control_character_never_reaches_the_output(text: str, control: str) -> None:
    assert control not in printable(text + control + text)


def test_layout_characters_may_be_kept() -> None:
    assert printable("a\n\tb\x1b[0m", keep="\n\t") == "a\n\tb\\x1b[0m"


@given(key_names, key_names, session_ids, session_ids)
def test_distinct_tenants_or_ids_never_share_a_session_key(
    first: str, second: str, id_one: str, id_two: str
) -> None:
    one = Tenant(first).scope(api_session(id_one))
    two = Tenant(second).scope(api_session(id_two))
    default = DEFAULT_TENANT.scope(api_session(id_two))
    assert (one == two) == (first == second and id_one == id_two)
    assert one != default
    # The key survives the text form the store and the CLI use.
    assert SessionKey.parse(str(one)) == one
    assert Tenant(first).owns(one)
    assert Tenant(first).owns(default) is False
    assert DEFAULT_TENANT.owns(one) is False


@given(st.text(max_size=80))
def test_a_key_name_is_a_tenant_or_an_invalid_request(name: str) -> None:
    if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        assert Tenant(name).label == name
    else:
        with pytest.raises(InvalidRequest):
            Tenant(name)


@given(st.text(max_size=300))
def test_an_idempotency_key_is_checked_or_refused(value: str) -> None:
    if 1 <= len(value) <= 255 and value.isprintable():
        assert check_idempotency_key(value) == value
    else:
        with pytest.raises(InvalidRequest, match="Idempotency-Key"):
            check_idempotency_key(value)


@given(st.binary(), st.binary())
def test_the_fingerprint_depends_on_the_body(one: bytes, two: bytes) -> None:
    same = fingerprint("POST", "/v1/chat/completions", one) == fingerprint(
        "POST", "/v1/chat/completions", two
    )
    assert same == (one == two)


def test_a_record_decides_replay_wait_take_over_or_refuse() -> None:
    answer = StoredAnswer(200, "application/json", b"{}")
    assert decide("f", "f", answer, lease_until=10.0, now=5.0) == answer
    assert decide("f", "f", None, lease_until=10.0, now=5.0) == Running()
    assert decide("f", "f", None, lease_until=10.0, now=11.0) == Claimed()
    with pytest.raises(IdempotencyKeyReused):
        decide("f", "g", answer, lease_until=10.0, now=5.0)

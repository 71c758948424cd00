"""Masking secrets in text: the rule for what is masked, call scopes and a bounded window."""

from __future__ import annotations

import json

import pytest

from hiagent_host import redact
from hiagent_host.redact import MASK, Secrets, SecretWindow


def test_a_secret_is_masked_wherever_it_occurs_even_inside_a_word() -> None:
    assert Secrets(["pass"]).redact("password pass") == f"{MASK}word {MASK}"


@pytest.mark.parametrize("short", ["a", "ab", "abc"])
def test_a_short_secret_is_masked_only_where_it_stands_alone(short: str) -> None:
    text = f"{short} x{short}y cfg={short}, '{short}'"
    assert Secrets([short]).redact(text) == f"{MASK} x{short}y cfg={MASK}, '{MASK}'"


def test_the_longest_of_overlapping_secrets_wins() -> None:
    secrets = Secrets(["abcd", "abcd-long", "long-tail"])
    assert secrets.redact("abcd-long abcd long-tail") == f"{MASK} {MASK} {MASK}"


@pytest.mark.parametrize(
    "secret", ['pa"ss\\word-91', "sk-密钥-ключ-77", "it's\ttabbed", "line\nbreak-5"]
)
def test_escaped_renderings_are_masked(secret: str) -> None:
    secrets = Secrets([secret])
    for rendering in (
        json.dumps({"k": secret}),
        json.dumps({"k": secret}, ensure_ascii=False),
        repr({"k": secret}),
        ascii({"k": secret}),
        f"raw {secret} raw",
    ):
        masked = secrets.redact(rendering)
        assert MASK in masked, rendering
        for form in redact.renderings(secret):
            assert form not in masked


def test_a_truncated_rendering_loses_the_head_and_tail_it_keeps() -> None:
    secret = "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
    shown = f"input_value='{secret[:25]}...{secret[-20:]}'"
    masked = Secrets([secret]).redact(shown)
    assert masked == f"input_value='{MASK}...{MASK}'"


def test_empty_strings_are_not_secrets_and_the_repr_shows_no_value() -> None:
    secrets = Secrets(["", "sk-hidden-1"])
    assert len(secrets) == 1
    assert "sk-hidden-1" not in repr(secrets)
    assert Secrets([""]).redact("anything") == "anything"


def test_redact_value_masks_strings_and_keys_at_any_depth() -> None:
    deep: object = "sk-deep-secret"
    for _ in range(100):
        deep = {"k": [deep]}
    secrets = Secrets(["sk-deep-secret"])
    text = json.dumps(secrets.redact_value({"sk-deep-secret": deep, "n": 1}))
    assert "sk-deep-secret" not in text
    assert text.count(MASK) == 2


def test_a_scope_makes_its_secrets_active_only_inside() -> None:
    assert not redact.active()
    with redact.scope(Secrets(["outer-1"])):
        with redact.scope(Secrets(["inner-2"])):
            assert redact.active().redact("outer-1 inner-2") == f"{MASK} {MASK}"
        assert redact.active().redact("outer-1 inner-2") == f"{MASK} inner-2"
    assert redact.active().redact("outer-1") == "outer-1"


def test_a_window_keeps_the_most_recent_values_only() -> None:
    window = SecretWindow(3)
    for i in range(5):
        window.add(Secrets([f"secret-{i}"]))
    window.add(Secrets(["secret-2"]))  # seen again: now the youngest
    window.add(Secrets(["secret-5"]))
    assert len(window) == 3
    text = " ".join(f"secret-{i}" for i in range(6))
    assert window.redact(text) == f"secret-0 secret-1 {MASK} secret-3 {MASK} {MASK}"

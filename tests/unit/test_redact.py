"""Quoting a container's output: bounded, sanitised, the deployment's env values redacted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.policy.redact import MAX_LINE_CHARS, sanitize


def test_env_values_are_redacted_longest_first() -> None:
    env = {"DB_PASSWORD": "hunter2-very-secret", "PART": "hunter2", "SHORT": "on"}
    text = "connecting with hunter2-very-secret\nretry hunter2 on port 5432\n"
    assert sanitize(text, env) == (
        "connecting with <env:DB_PASSWORD>\nretry <env:PART> on port 5432"
    )


def test_escapes_and_control_characters_are_dropped() -> None:
    assert sanitize("\x1b[31mred\x1b[0m\x00 bell\x07", {}) == "red? bell?"


def test_bounded_to_the_last_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(100))
    assert sanitize(text, {}, max_lines=3) == "line 97\nline 98\nline 99"
    assert len(sanitize("x" * 10_000, {})) == MAX_LINE_CHARS


@given(
    text=st.text(max_size=3000),
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=30),
)
def test_a_secret_never_survives(text: str, secret: str) -> None:
    quoted = sanitize(text + secret + text, {"SECRET": secret}, max_lines=1000, max_chars=10**6)
    assert secret not in quoted

"""What of a container's own output may be quoted in status messages and events. Pure.

Called by the restart gate and the reconciler before a log tail or a healthcheck's output
reaches Postgres (and so `berth describe`, metrics labels never): escape sequences and
control characters are dropped, the values of the deployment's own `env` are replaced by
`<env:NAME>` (an app that prints its password does not put it in Postgres), and the text is
bounded in lines and characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
MIN_SECRET_LENGTH = 4  # shorter values ("1", "on") are everywhere: replacing them hides all
MAX_LINE_CHARS = 300


def sanitize(text: str, env: Mapping[str, str], max_lines: int = 20, max_chars: int = 2000) -> str:
    """`text` fit to quote: no escapes, no env values, at most `max_lines` lines (the last
    ones) of at most MAX_LINE_CHARS characters, and `max_chars` in all."""
    text = _ESCAPES.sub("", text)
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text)
    for name, value in sorted(env.items(), key=lambda item: -len(item[1])):
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, f"<env:{name}>")
    lines = [line[:MAX_LINE_CHARS] for line in text.strip().splitlines()[-max_lines:]]
    return "\n".join(lines)[-max_chars:]

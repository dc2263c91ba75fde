"""Spintax and placeholders: ``{a|b|{c|d}}`` picks one option; ``{{me.first_name}}`` is filled in.

Written by hand: the PyPI spintax packages are unmaintained, use global randomness (we need a
seeded ``random.Random``) and do not tell spintax from ``{{placeholder}}`` syntax.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

__all__ = ["PLACEHOLDERS", "SpintaxError", "check_template", "render"]

PLACEHOLDERS = frozenset(
    {
        "me.first_name",
        "me.name",
        "me.company",
        "them.first_name",
        "them.name",
        "them.company",
        "date.weekday",
        "date.next_weekday",
        "date.month",
    }
)
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([a-z_]+\.[a-z_]+)\s*\}\}")


class SpintaxError(ValueError):
    """A template's braces or placeholders are malformed; the message gives the position."""


def _parse(text: str, pos: int, rng: random.Random | None, depth: int) -> tuple[str, int]:
    """Render ``text`` from ``pos`` until an unmatched ``|`` or ``}`` at this depth."""
    out: list[str] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == "{" and text.startswith("{{", pos):
            end = text.find("}}", pos + 2)
            if end < 0:
                raise SpintaxError(f"unclosed placeholder '{{{{' at position {pos}")
            out.append(text[pos : end + 2])
            pos = end + 2
        elif ch == "{":
            options: list[str] = []
            pos += 1
            while True:
                option, pos = _parse(text, pos, rng, depth + 1)
                if not option.strip():
                    raise SpintaxError(f"empty spintax option before position {pos}")
                options.append(option)
                if pos >= n:
                    raise SpintaxError("unclosed '{' in spintax")
                if text[pos] == "}":
                    pos += 1
                    break
                pos += 1  # the '|'
            out.append(options[0] if rng is None else rng.choice(options))
        elif ch in "|}":
            if depth == 0:
                raise SpintaxError(f"unexpected {ch!r} at position {pos} outside '{{...}}'")
            return "".join(out), pos
        else:
            out.append(ch)
            pos += 1
    if depth > 0:
        raise SpintaxError("unclosed '{' in spintax")
    return "".join(out), pos


def check_template(text: str) -> None:
    """Raise :class:`SpintaxError` if ``text`` has unbalanced braces or unknown placeholders."""
    _parse(text, 0, None, 0)
    for name in _PLACEHOLDER_RE.findall(text):
        if name not in PLACEHOLDERS:
            raise SpintaxError(
                f"unknown placeholder {{{{{name}}}}}: use one of {', '.join(sorted(PLACEHOLDERS))}"
            )
    stripped = _PLACEHOLDER_RE.sub("", text)
    if "{{" in stripped or "}}" in stripped:
        raise SpintaxError("malformed placeholder: write {{me.first_name}}")


def render(text: str, values: Mapping[str, str], rng: random.Random) -> str:
    """Pick spintax options with ``rng`` and fill the placeholders from ``values``."""
    spun, _ = _parse(text, 0, rng, 0)
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), ""), spun)

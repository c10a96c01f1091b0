"""Suspicious-input detection: SQL and script injection, path traversal, null bytes and the like in a
URL or in the string values of a JSON or form body. Detection only: validation and parameterised SQL are the
defence; a match scores the address (:mod:`api.security.risk`) and is audited.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from api.log import get_logger

log = get_logger("api.security.scanner")


# Input that looks like SQL injection, script injection, path traversal or a null byte. Detection only:
# validation and parameterised SQL are the defence; a match scores the address and is audited.
# One pattern each, matched against the lowercased text: each has a literal start the regex engine scans
# for quickly, which one alternation of them all does not (about 20 times slower on a 300 KiB batch).
# ``union … select`` only as SQL writes it (blanks, brackets or /* comments */ of at most 64 characters
# between), so a product called "Union Jack Select Tea" is not an attack. Linear work whatever the input:
# no quantifier nests in another that can match the same text two ways (the separators' loop is possessive,
# a comment ends at its first ``*/``), and a comment is bounded, so an unclosed ``/*`` after each of many
# ``union``s is not scanned to the end of the text from each (tests/api/test_security.py, pathological).
_ATTACK_PATTERNS = (
    r"<\s*(?:script|iframe)",
    r"javascript:",
    r"on(?:error|load)\s*=",
    r"union(?:\s|\(|/\*(?:[^*]|\*(?!/)){0,64}\*/)++(?:all\s+|distinct\s+)?\(*select\b",
    r"'\s*or\s+'?\d+'?\s*=\s*'?\d",
    r";\s*drop\s+table",
    r"--\s*$",
    r"\.\.[/\\]",
    r"\x00",
    r"sleep\s*\(\s*\d",
    r"\$\{jndi:",
)
ATTACKS = tuple(re.compile(p, re.DOTALL) for p in _ATTACK_PATTERNS)


def _ending_at(end: str) -> tuple[re.Pattern[str], ...]:
    """The patterns with "end of the text" (a trailing ``$``) also matching before ``end``."""
    return tuple(
        re.compile(p[:-1] + f"(?:{end}|$)" if p.endswith("$") and not p.endswith("\\$") else p, re.DOTALL)
        for p in _ATTACK_PATTERNS
    )


# Cheap first looks at a whole body (a match is then confirmed value by value): the raw JSON text when it
# has no backslash (every string as written, ending at a quote), else all values joined by U+FFFF.
_JOIN = "\uffff"
_ATTACKS_IN_RAW_JSON = _ending_at('"')
_ATTACKS_IN_JOINED = _ending_at(_JOIN)
# Body fields whose values are secrets: scanned, but a hit records the field's name only (never a fragment).
SECRET_FIELD = re.compile(r"pass|secret|token|otp|code|key|authorization", re.IGNORECASE)


def find_attack(text: str, patterns: tuple[re.Pattern[str], ...] = ATTACKS) -> str | None:
    """The (lowercased) fragment of ``text`` that looks like an attack, or None."""
    lowered = text.lower()
    for pattern in patterns:
        match = pattern.search(lowered)
        if match is not None:
            return match.group(0)[:64]
    return None


def suspicious_text(text: str) -> str | None:
    """The fragment of ``text`` (URL-decoded) that looks like an attack, or None."""
    return find_attack(unquote_plus(text))


def _string_leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(field path, text)`` for every string in a parsed JSON document, depth first, in order. Keys are
    strings too (a key can carry a payload)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            yield where or "(body)", node
        elif isinstance(node, dict):
            children = []
            for key, child in node.items():
                child_path = f"{where}.{key}" if where else str(key)
                yield child_path, str(key)
                children.append((child_path, child))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{where}.{i}" if where else str(i), c) for i, c in enumerate(node)]))


def _strings(document: Any) -> list[str]:
    """Every string (values and keys) of a parsed JSON document, in no particular order."""
    out: list[str] = []
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            out.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def suspicious_body(body: bytes, content_type: str) -> tuple[str, str | None] | None:
    """The first string value of a JSON or form body that looks like an attack: ``(field path, fragment)``,
    the fragment None when the field holds a secret (a password is never recorded, not even in part).
    None when nothing matches or the body does not parse (validation answers that)."""
    leaves: Iterator[tuple[str, str]]
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return None
        leaves = ((name, text) for name, value in pairs for text in (name, value))
    else:
        # Parsed from the bytes as the route will (``json.loads`` also takes UTF-16/32 and a UTF-8 BOM).
        # A look at the raw text first, for plain UTF-8 only: without a backslash (no escape) JSON holds
        # every string as it is, so no match there means none in any value, and nothing need be parsed.
        if json.detect_encoding(body) == "utf-8":
            try:
                text = body.decode("utf-8", "surrogatepass")  # as json.loads decodes (lone surrogates too)
            except UnicodeDecodeError:
                return None
            if "\\" not in text and find_attack(text, _ATTACKS_IN_RAW_JSON) is None:
                return None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None
        # All values at once (cheap), and only on a match the walk that names the field.
        if find_attack(_JOIN.join(_strings(document)), _ATTACKS_IN_JOINED) is None:
            return None
        leaves = _string_leaves(document)
    for field, value in leaves:
        found = find_attack(value)
        if found is not None:
            # Anything under a secret's name is secret too ({"password": {"new": …}}, {"password": […]}).
            secret = any(SECRET_FIELD.search(part) for part in field.split("."))
            return field[:120], None if secret else found
    return None

"""The effective configuration with every secret redacted, for ``GET /api/observability/config``.

Redacted: every ``SecretStr`` field; any field whose name says it holds a secret; the password of a
database or Redis URL, also when it is passed as a query parameter; everything but the scheme and host
of a webhook URL (webhook paths and queries commonly carry the token, e.g. Slack's
``/services/T../B../<secret>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from api.log import redact_query
from chainsync.settings import Settings

REDACTED = "[redacted]"
_SECRET_WORDS = ("secret", "password", "token", "api_key", "apikey", "credential", "private")


def redact_db_url(url: str) -> str:
    """A database or cache URL with its password hidden, in the user part and in the query string alike
    (``?password=…``, ``sslpassword=…``, ``?token=…``): drivers accept credentials in both places."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return REDACTED
    return redact_query(shown)


def redact_webhook(url: str) -> str:
    """Scheme and host (and port) only; credentials, path and query become ``[redacted]``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    hidden = parts.username or parts.password or parts.path.strip("/") or parts.query
    return f"{parts.scheme}://{host}{port}" + (f"/{REDACTED}" if hidden else "")


def effective_config(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            out[name] = REDACTED if value.get_secret_value() else None
        elif value is not None and any(word in name for word in _SECRET_WORDS):
            out[name] = REDACTED
        elif name.endswith("_url") and isinstance(value, str):
            out[name] = redact_db_url(value)
        elif "webhook" in name and isinstance(value, str):
            out[name] = redact_webhook(value) if value else value
        elif isinstance(value, Path):
            out[name] = str(value)
        else:
            out[name] = value
    out["ops_store"] = redact_db_url(settings.ops_store)
    return out

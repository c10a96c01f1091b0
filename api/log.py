"""Structured JSON logging (structlog) for the API. Secrets never reach a log line: handlers log no
headers, bodies or query strings, and :func:`_redact` masks any field whose name suggests a secret."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_WORDS = ("password", "token", "secret", "authorization", "api_key", "apikey", "cookie")


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event:
        if any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = "[redacted]"
    return event


# A query parameter that carries a credential: ``?token=…`` (WebSocket auth), ``api_key=…``, ``password=…``.
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:token|secret|password|passwd|apikey|api[_-]key|authorization)"
    r"|(?:[a-z0-9]+[_.-])*(?:key|auth))=)[^&;#\s\"']*"
)


def redact_query(text: str) -> str:
    """``text`` with the value of every credential-like query parameter replaced by ``[redacted]``."""
    return _SECRET_QUERY.sub(r"\1[redacted]", text) if "=" in text else text


class RedactQueryFilter(logging.Filter):
    """Mask credentials in the paths uvicorn logs (its access log and its WebSocket lines carry the full
    path with the query string, so ``/ws/notifications?token=<jwt>`` would otherwise be written out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact_query(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_query(record.msg)
        return True


_REDACTOR = RedactQueryFilter()


def redact_server_logs() -> None:
    """Install :class:`RedactQueryFilter` on uvicorn's loggers (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


class _Stdout:
    """Resolve ``sys.stdout`` at write time (test runners and servers swap it)."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(level: str) -> None:
    redact_server_logs()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level.lower()),
        logger_factory=structlog.PrintLoggerFactory(_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)

"""Alerts: a JSON POST to ``MONITORING_ALERT_WEBHOOK``, retried with exponential backoff and jitter.

:func:`send_alert` blocks until delivered or given up (for sensors, which run outside any request);
:func:`send_alert_in_background` hands the same work to a daemon thread so a request never waits on it.
A webhook URL often holds a secret (a token in the path or the query), so it never reaches a log line.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity import Retrying as _Retrying

log = logging.getLogger("chainsync.alerts")


class _RetryableStatus(Exception):
    """The receiver answered 429 or 5xx: worth another try."""


def alert_payload(kind: str, summary: str, severity: str = "critical", **details: Any) -> dict[str, Any]:
    """The JSON body of every alert: ``source``, ``kind``, ``severity``, ``summary``, ``at``, ``details``."""
    return {
        "source": "chainsync",
        "kind": kind,
        "severity": severity,
        "summary": summary,
        "at": datetime.now(UTC).isoformat(),
        "details": details,
    }


def send_alert(
    url: str | None,
    payload: dict[str, Any],
    *,
    attempts: int = 4,
    timeout_s: float = 5.0,
    initial_wait_s: float = 0.5,
    max_wait_s: float = 8.0,
) -> bool:
    """POST ``payload`` to ``url``; retry transport errors, 429 and 5xx up to ``attempts`` times with
    exponential backoff (``initial_wait_s`` doubling, jittered, capped at ``max_wait_s``). Returns True
    when the receiver answered 2xx; False when there is no URL, it refused (other 4xx) or every try
    failed. Never raises."""
    if not url:
        return False
    retrying = _Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=initial_wait_s, max=max_wait_s),
        retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
        reraise=False,
    )
    try:
        with httpx.Client(timeout=timeout_s) as http:
            for attempt in retrying:
                with attempt:
                    resp = http.post(url, json=payload)
                    if resp.status_code == 429 or resp.status_code >= 500:
                        raise _RetryableStatus(str(resp.status_code))
                    if resp.status_code >= 400:
                        log.warning("alert refused by receiver: HTTP %s", resp.status_code)
                        return False
                    return True
    except RetryError:
        log.warning("alert not delivered after %d attempts (kind=%s)", attempts, payload.get("kind"))
    except Exception as exc:  # an alert must never break its caller
        log.warning("alert failed: %s", type(exc).__name__)
    return False


def send_alert_in_background(
    url: str | None, payload: dict[str, Any], **kwargs: Any
) -> threading.Thread | None:
    """:func:`send_alert` on a daemon thread; returns the thread (None when there is no URL)."""
    if not url:
        return None
    thread = threading.Thread(
        target=send_alert, args=(url, payload), kwargs=kwargs, name="alert-webhook", daemon=True
    )
    thread.start()
    return thread

"""Kept for existing callers: the security audit trail now lives in :mod:`api.audit`."""

from api.audit import AUDIT_DEVICE_ID, AUDIT_STORE_ID, record_security_event

__all__ = ["AUDIT_DEVICE_ID", "AUDIT_STORE_ID", "record_security_event"]

"""The OAuth2 password flow: a username and password for a short-lived JWT."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api.deps import EngineDep, SettingsDep
from api.log import get_logger
from api.queries.audit import record_security_event
from api.security import ALL_STORES, create_access_token
from chainsync.ops_store.users import get_user
from chainsync.passwords import verify_password

router = APIRouter(prefix="/auth", tags=["auth"])
log = get_logger("api.auth")

# One message for an unknown user and a wrong password, so a caller cannot tell which it was.
_BAD_CREDENTIALS = "Incorrect username or password"


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int  # seconds
    role: Literal["admin", "manager", "cashier"]


@router.post("/token", response_model=TokenResponse)
def login(
    request: Request,
    response: Response,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    settings: SettingsDep,
    engine: EngineDep,
) -> TokenResponse:
    """Exchange a username and password (form fields) for a bearer token."""
    user = get_user(engine, form.username)
    usable = user is not None and user.is_active
    # verify_password(None, ...) checks a dummy hash, so unknown users cost the same time as wrong passwords.
    ok = verify_password(user.password_hash if usable and user else None, form.password)
    if settings.security_audit_enabled:
        record_security_event(
            engine,
            kind="login_success" if ok else "login_failure",
            outcome="success" if ok else "failure",
            username=form.username,
            source_ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
    if not ok or user is None:
        log.info("login_failure", username=form.username)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, _BAD_CREDENTIALS, headers={"WWW-Authenticate": "Bearer"}
        )
    stores = [ALL_STORES] if user.role == "admin" else sorted(user.store_ids)
    token = create_access_token(settings, subject=user.username, role=user.role, stores=stores)
    log.info("login_success", username=user.username, role=user.role)
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 5.1: token responses are not cached
    return TokenResponse(access_token=token.token, expires_in=token.expires_in, role=user.role)

"""The login page, shown at every address until the session holds a token: username and password, then
the two-factor code when the API asks for it. Every refusal is shown as the API gave it (wrong password,
wrong code, too many attempts), never as a traceback."""

from __future__ import annotations

import re

import streamlit as st

from chainsync.settings import get_settings
from dashboards import auth

OTP_STEP_KEY = "login_otp_for"  # the username the API asked a two-factor code for
_OTP = re.compile(r"^[0-9]{6,8}$")


def page() -> None:
    """Draw the login form; on success the session holds the tokens and the app reruns into the pages."""
    # A narrow column: a login form the width of a wide layout reads badly.
    with st.columns([1, 2, 1])[1]:
        _form()


def _form() -> None:
    st.title("ChainSync Analytics")
    st.caption("Log in with your ChainSync user (managers and administrators).")
    notice = st.session_state.get(auth.NOTICE_KEY)
    if notice:
        st.info(notice, icon=":material/logout:")
    settings = get_settings()
    if settings.demo_mode:
        st.info(
            "Demo mode: the users `admin`, `manager` (the first half of the stores) and `cashier` (no "
            "dashboard access) exist, with the demo password `chainsync demo` prints.",
            icon=":material/info:",
        )
    otp_for = st.session_state.get(OTP_STEP_KEY)
    with st.form("login"):
        username = st.text_input("Username", key="login_username", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        otp = ""
        if otp_for is not None:
            otp = st.text_input(
                "Two-factor code",
                key="login_otp",
                max_chars=8,
                autocomplete="one-time-code",
                help="The 6-digit code your authenticator app shows now.",
            )
        submitted = st.form_submit_button("Log in", type="primary")
    if otp_for is not None:
        st.caption(f"Two-factor authentication is on for {otp_for}: enter the code from your app.")
    if not submitted:
        return
    username = username.strip()
    if otp_for is not None and otp_for != username:
        st.session_state.pop(OTP_STEP_KEY)  # another user: start over with their password
        otp, otp_for = "", None
    problems = [
        m
        for ok, m in (
            (bool(username), "Username: required."),
            (bool(password), "Password: required."),
            (otp_for is None or bool(_OTP.match(otp.strip())), "Two-factor code: 6 to 8 digits."),
        )
        if not ok
    ]
    if problems:
        st.error(" ".join(problems))
        return
    with st.spinner("Logging in…"):
        result = auth.login(username, password, otp.strip() or None)
    if result.session is not None:
        st.session_state.pop(OTP_STEP_KEY, None)
        st.rerun()
    if result.needs_otp and otp_for is None:
        st.session_state[OTP_STEP_KEY] = username
        st.rerun()  # draw the form again with the code field; the password stays in its field
    st.error(result.error or "Login refused.", icon=":material/lock:")

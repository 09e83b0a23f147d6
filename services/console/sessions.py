"""Signing in and out: the session cookie and the CSRF token. Pure rules, no nameko.

- The cookie holds a random value (256 bits); the database keeps only its sha256, so a copy of the
  database signs nobody in. HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
  it), Path=/, Secure when the console is reached over TLS (or always: COOKIE_SECURE).
- Every form carries the session's CSRF token, compared in constant time; the sign-in form, before
  there is a session, carries one bound to a short-lived pre-session cookie (double submit).
- A session ends at sign-out, when its staff token expires, or after SESSION_HOURS; the token is checked
  again on every request, so a revoked token (revoked.json) or a removed key ends it at once.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone

SESSION_COOKIE = "sdj_session"
SIGNIN_COOKIE = "sdj_signin"  # the pre-session CSRF value of the sign-in form
LANG_COOKIE = "sdj_lang"
SIGNIN_FORM_SECONDS = 1800


class BadForm(Exception):
    """A form without the right CSRF token: HTTP 403."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def key_of(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


def check_csrf(expected: str | None, given: str | None) -> None:
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise BadForm("csrf: missing or not this session's")


def expiry(token_expires: float | None, now: datetime, session_hours: float) -> datetime:
    """When the session ends: when the token does, and never later than session_hours from now."""
    latest = now + timedelta(hours=session_hours)
    if token_expires is None:
        return latest
    return min(latest, datetime.fromtimestamp(token_expires, timezone.utc))


def over_tls(scheme: str, forwarded_proto: str | None, setting: str) -> bool:
    """Whether the cookie gets Secure: COOKIE_SECURE true/false, or auto: the request came over TLS (a proxy
    in front of the console says so with X-Forwarded-Proto)."""
    setting = str(setting).lower()
    if setting in ("true", "1", "yes"):
        return True
    if setting in ("false", "0", "no"):
        return False
    return scheme == "https" or (forwarded_proto or "").split(",")[0].strip().lower() == "https"


def cookie_options(secure: bool, max_age: int | None) -> dict:
    return {"max_age": max_age, "httponly": True, "secure": secure, "samesite": "Strict", "path": "/"}

"""Calls residents make through a gateway, proved: the gateway signs what it forwards. Pure rules.

Residents do not call our APIs themselves: a gateway (the SMS gateway, the WeChat back end, the
mail system) forwards what they sent. It signs every call with a secret it shares with us, and
says who sent it:

    X-Sdj-Gateway: sms                      which gateway (its secrets: config GATEWAYS)
    X-Sdj-Timestamp: 1796000000             seconds since 1970 (UTC), within WINDOW of ours
    X-Sdj-Signature: <hex>                  HMAC-SHA256(secret, "<timestamp>.<body bytes>")

A call is authentic when the signature verifies with any of the gateway's current secrets
(rotation) and the timestamp is near our clock; the service that takes it remembers the
signature so the same call twice is a replay. `same_sender` says whether the sender the gateway
names is a ticket's contact. Used by notify (answers to the follow-up) and intake (a resident
withdrawing a request).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta

from nameko.extensions import DependencyProvider

from .config import WatchedFile

WINDOW = timedelta(minutes=5)


class ForgedCall(Exception):
    """Not from a gateway we trust, or not now: HTTP 401."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_gateway(headers, body: bytes, gateways: dict[str, list[str]], now: datetime) -> tuple[str, str]:
    """(gateway name, signature) of an authentic call; ForgedCall says what is wrong."""
    name = headers.get("X-Sdj-Gateway") or ""
    stamp = headers.get("X-Sdj-Timestamp") or ""
    given = (headers.get("X-Sdj-Signature") or "").lower()
    secrets_of = gateways.get(name)
    if not secrets_of:
        raise ForgedCall("X-Sdj-Gateway: not a gateway we know")
    if not re.fullmatch(r"\d{1,12}", stamp):
        raise ForgedCall("X-Sdj-Timestamp: seconds since 1970, please")
    if abs(now.timestamp() - int(stamp)) > WINDOW.total_seconds():
        raise ForgedCall(f"X-Sdj-Timestamp: more than {WINDOW.total_seconds():.0f} s from our clock")
    if not any(hmac.compare_digest(given, signature(secret, stamp, body)) for secret in secrets_of):
        raise ForgedCall("X-Sdj-Signature: does not verify")
    return name, given


def same_sender(sender: str, phone: str | None, email: str | None) -> bool:
    """Is `sender` (as the gateway saw it) the ticket's contact? Phones are compared as dialled in China."""
    sender = sender.strip()
    if "@" in sender:
        return bool(email) and sender.lower() == email.strip().lower()
    digits = re.sub(r"\D", "", sender)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) > 11:
            digits = digits[len(prefix):]
    return bool(phone) and bool(digits) and digits == re.sub(r"\D", "", phone)



def _gateways(document) -> dict[str, list[str]]:
    gateways = {str(name): [str(s) for s in (secrets or [])] for name, secrets in (document or {}).items()}
    for name, secrets in gateways.items():
        if any(len(s) < 16 for s in secrets):
            raise ValueError(f"gateway {name}: every secret needs at least 16 characters")
    return gateways


class Gateways(DependencyProvider):
    """The gateways residents' calls come through, and the secrets they sign with (config GATEWAYS:
    a YAML file `{name: [secret, …]}`; several secrets per gateway while one is being rotated)."""

    def setup(self) -> None:
        path = self.container.config.get("GATEWAYS")
        if not path:
            raise ValueError("GATEWAYS: no file of gateway secrets configured: no resident's call could "
                             "be trusted (see README, Security model)")
        self.file = WatchedFile(path, _gateways, "GATEWAYS")

    def get_dependency(self, worker_ctx):
        return self.file.current()

"""A resident's answer to the follow-up (回访) counts only when it proves it is theirs. Pure rules.

Residents do not call our API themselves: a gateway (the SMS gateway, the WeChat back end,
the mail system) forwards what they sent. It signs every call with a secret it shares with
us, and says who sent the answer:

    X-Sdj-Gateway: sms                      which gateway (its secrets: config GATEWAYS)
    X-Sdj-Timestamp: 1796000000             seconds since 1970 (UTC), within WINDOW of ours
    X-Sdj-Signature: <hex>                  HMAC-SHA256(secret, "<timestamp>.<body bytes>")
    body: {"ticket_id", "survey_code", "sender", "answer": "1"|"2", "comment"}

The answer counts when the signature verifies (with any of the gateway's current secrets:
rotation), was not seen before, the survey code is the one sent with that survey (unguessable,
never shown elsewhere), and the sender is the ticket's contact (its phone or email).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=5)
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: typed back from an SMS
CODE_LENGTH = 10  # 50 bits


class ForgedReply(Exception):
    """Not from a gateway we trust, or not now: HTTP 401."""


class NotTheResident(Exception):
    """From a gateway, but not the answer of that survey's resident: HTTP 403."""


def new_survey_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_gateway(headers, body: bytes, gateways: dict[str, list[str]], now: datetime) -> tuple[str, str]:
    """(gateway name, signature) of an authentic call; ForgedReply says what is wrong."""
    name = headers.get("X-Sdj-Gateway") or ""
    stamp = headers.get("X-Sdj-Timestamp") or ""
    given = (headers.get("X-Sdj-Signature") or "").lower()
    secrets_of = gateways.get(name)
    if not secrets_of:
        raise ForgedReply("X-Sdj-Gateway: not a gateway we know")
    if not re.fullmatch(r"\d{1,12}", stamp):
        raise ForgedReply("X-Sdj-Timestamp: seconds since 1970, please")
    if abs(now.timestamp() - int(stamp)) > WINDOW.total_seconds():
        raise ForgedReply(f"X-Sdj-Timestamp: more than {WINDOW.total_seconds():.0f} s from our clock")
    if not any(hmac.compare_digest(given, signature(secret, stamp, body)) for secret in secrets_of):
        raise ForgedReply("X-Sdj-Signature: does not verify")
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


def check_reply(survey, contact, survey_code: str, sender: str) -> None:
    """NotTheResident unless the code is that survey's and the sender its resident."""
    if not survey.code or not hmac.compare_digest(survey.code.encode(), survey_code.strip().upper().encode()):
        raise NotTheResident("survey_code: not the code sent with this ticket's follow-up")
    if not same_sender(sender, contact.phone, contact.email):
        raise NotTheResident("sender: not the contact this ticket's follow-up was sent to")

"""How residents can be reached: the one set of phone and email rules for every way in (intake's Open311
forms and AMQP submissions, outreach's household register), and how contact details are shown masked.

A phone number is a mainland mobile (1[3-9] and nine more digits) or landline (0, a 2- or
3-digit area code, a 7- or 8-digit number), written however people write it: +86, 0086,
spaces, dashes, brackets. It is stored in one form, as dialled inside China.
"""
from __future__ import annotations

import re

from marshmallow import ValidationError, validate

MOBILE = re.compile(r"^1[3-9]\d{9}$")
LANDLINE = re.compile(r"^0[1-9]\d{8,10}$")  # 0 + area code (10, 2x, 5xx …) + local number: 10 to 12 digits
_WRITTEN_PHONE = re.compile(r"^\+?[\d\s\-()]{5,24}$")
_FOREIGN = re.compile(r"^(\+|00)(?!86)")  # an international prefix, but not China's
_EMAIL = validate.Email()
MAX_EMAIL = 254


def normalise_phone(raw: str | None) -> str | None:
    """One form per number, as dialled inside China: 13812345678, 05571234567.

    +86 / 0086 prefixes and separators are dropped; a landline written
    internationally (+86 557 1234567) gets back the trunk 0 of its area code.
    """
    if not raw:
        return None
    digits = re.sub(r"[^\d+]", "", raw)
    international = False
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits, international = digits[len(prefix):], True
    digits = digits.lstrip("+")
    if international and digits and not digits.startswith("0") and not MOBILE.match(digits):
        digits = "0" + digits  # landline: area code 557 (or Beijing's 10) is dialled 0557 (010) at home
    return digits


def phone_problem(raw: str) -> str | None:
    """Why `raw` is not a mainland phone number, or None when it is one."""
    if not _WRITTEN_PHONE.match(raw):
        return "not a phone number"
    if _FOREIGN.match(re.sub(r"[\s\-()]", "", raw)):
        return "not a mainland China number (+86 only)"
    number = normalise_phone(raw)
    if not (MOBILE.match(number) or LANDLINE.match(number)):
        return "not a mainland China mobile (1xxxxxxxxxx) or landline (0area-number) number"
    return None


def email_problem(raw: str) -> str | None:
    if len(raw) > MAX_EMAIL:
        return f"longer than {MAX_EMAIL} characters"
    try:
        _EMAIL(raw)
    except ValidationError:
        return "not an email address"
    return None


def mask_phone(phone: str | None) -> str | None:
    """13812345678 → *******5678: never more than the last four digits."""
    if not phone:
        return phone
    return "*" * max(len(phone) - 4, 3) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """王秀英 → 王**: enough to greet, not enough to identify."""
    return name[0] + "*" * (len(name) - 1) if name else name

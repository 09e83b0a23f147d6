"""A resident's answer to the follow-up (回访) counts only when it proves it is theirs. Pure rules.

The gateway that forwards it signs the call (services/common/gateways.py); the body is
`{"ticket_id", "survey_code", "sender", "answer": "1"|"2", "comment"}`. The answer counts when the
call is authentic and new, the survey code is the one sent with that survey (unguessable, never
shown elsewhere), and the sender is the ticket's contact (its phone or email).
"""
from __future__ import annotations

import hmac
import secrets

from services.common.gateways import same_sender

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: typed back from an SMS
CODE_LENGTH = 10  # 50 bits


class NotTheResident(Exception):
    """From a gateway, but not the answer of that survey's resident: HTTP 403."""


def new_survey_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def check_reply(survey, contact, survey_code: str, sender: str) -> None:
    """NotTheResident unless the code is that survey's and the sender its resident."""
    if not survey.code or not hmac.compare_digest(survey.code.encode(), survey_code.strip().upper().encode()):
        raise NotTheResident("survey_code: not the code sent with this ticket's follow-up")
    if not same_sender(sender, contact.phone, contact.email):
        raise NotTheResident("sender: not the contact this ticket's follow-up was sent to")

"""Events notify publishes on `notify.events`: strict schemas and one example each."""
from __future__ import annotations

from marshmallow import fields, validate

from services.common.envelope import Strict, example_envelope

from .templates import STAFF_TEMPLATES


class ResidentNotified(Strict):
    """A message reached the resident (or a reporter whose repeat joined the ticket): a survey, an outcome…"""
    template = fields.String(required=True)
    channel = fields.String(required=True)
    reference = fields.String(required=True)
    delivered_at = fields.String(required=True)


class ResidentAcknowledged(ResidentNotified):
    """The acknowledgement (受理告知, template `ack`) reached the resident: the moment the seed's promise and the
    ledger's 10-second count are about. An event of its own, so that whoever needs only this moment binds it
    alone and is not handed every other message (dispatch and the loop monitor: about three a ticket)."""
    template = fields.String(required=True, validate=validate.Equal("ack"))


ACKNOWLEDGEMENT = "ack"  # the template whose delivery is `resident_acknowledged`


def told_as(template: str) -> str | None:
    """The event a delivered message is told as: none for a message to staff."""
    if template in STAFF_TEMPLATES:
        return None
    return "resident_acknowledged" if template == ACKNOWLEDGEMENT else "resident_notified"


class NotificationFailed(Strict):
    """A message reached its recipient on none of the channels it was tried on (each for up to
    DELIVERY_PATIENCE_SECONDS, or refused for good). `channel`, `reason`, `attempts`: the last channel's.
    Added later (readers must not require them): `channels_tried` (in order), `message_id` (the message's
    first id: fallbacks derive theirs from it), `recipient` (resident: the ticket's own; reporter: someone
    whose repeat report joined the ticket; staff)."""
    template = fields.String(required=True)
    channel = fields.String(required=True)
    reason = fields.String(required=True)
    attempts = fields.Integer(required=True)
    channels_tried = fields.List(fields.String(), required=True)
    message_id = fields.String(required=True)
    recipient = fields.String(required=True, validate=validate.OneOf(("resident", "reporter", "staff")))


class FeedbackReceived(Strict):
    satisfied = fields.Boolean(required=True)
    comment = fields.String(required=True)
    round = fields.Integer(required=True)


class SurveyUnanswered(Strict):
    """The resident never answered the follow-up, not even after a reminder: a 回访 call decides."""
    round = fields.Integer(required=True)
    asked_at = fields.String(required=True)
    reminded_at = fields.String(required=True)


SCHEMAS = {"resident_acknowledged": ResidentAcknowledged(), "resident_notified": ResidentNotified(),
           "notification_failed": NotificationFailed(),
           "feedback_received": FeedbackReceived(), "survey_unanswered": SurveyUnanswered()}

# what residents heard and answered, one of each a ticket: also sent a relay round at a time in one message, for
# dispatch's ledger and follow-up (common/digests.py), besides each event on its own
DIGESTS = {"residents": ("resident_acknowledged", "feedback_received")}


def _example(event: str, data: dict) -> dict:
    return example_envelope(event, data, "c3f7f1a2-9b0e-4f51-8a43-6e2c1d9b7a54", "2026-11-27T01:00:00.300000+00:00")


EXAMPLES = {
    "resident_acknowledged": _example("resident_acknowledged", {"template": "ack", "channel": "email",
        "reference": "smtp:127.0.0.1:2525:<c3f7@songdaojia>", "delivered_at": "2026-11-27T01:00:00.290000+00:00"}),
    "resident_notified": _example("resident_notified", {"template": "survey", "channel": "email",
        "reference": "smtp:127.0.0.1:2525:<9a1e@songdaojia>", "delivered_at": "2026-11-28T01:30:00.120000+00:00"}),
    "notification_failed": _example("notification_failed", {"template": "ack", "channel": "sms",
        "reason": "gateway answered HTTP 400", "attempts": 1, "channels_tried": ["email", "sms"],
        "message_id": "c3f7f1a2-9b0e-4f51-8a43-6e2c1d9b7a54.ack", "recipient": "resident"}),
    "feedback_received": _example("feedback_received", {"satisfied": False, "comment": "还没送到",
        "round": 1}),
    "survey_unanswered": _example("survey_unanswered", {"round": 1, "asked_at": "2026-11-28T01:30:00+00:00",
        "reminded_at": "2026-11-29T01:30:00+00:00"}),
}

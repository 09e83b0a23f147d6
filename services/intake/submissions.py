"""The AMQP intake exchange that outside systems publish to.

Exchange `intake.submissions` (topic, durable); routing key `submit.<channel>`
(hotline, wechat, miniprogram, counter, grid_visit, night_talk). A message is a
JSON object (see `schemas.Submission`) with `content_type` application/json,
`user_id` (the publisher's broker login, which the broker checks) and a
`message_id`, the publisher's idempotency key: the same message id from the same
publisher never makes two tickets.
With `reply_to` set, the publisher gets a receipt there (`submission_receipt`:
its message id and the ticket number, `received` or `merged`; or `rejected`
with the reason when the message went to the dead-letter queue instead).
Published for outside systems as JSON Schemas: submission.schema.json (the body)
and receipt.schema.json (the receipt), beside this file.
"""
from __future__ import annotations

import json

from services.common.amqp import Outgoing
from services.common.envelope import MalformedEvent, seal
from services.common.messaging import Origin, ReliableConsumer

from .events import SCHEMAS
from .tickets import rejection

EXCHANGE = "intake.submissions"
QUEUE = "intake.submissions"
MAX_BODY = 64 * 1024


def decode_submission(body, message, origin: Origin) -> tuple[dict, str, str | None, Origin]:
    message_id = (message.properties or {}).get("message_id")
    if not message_id:
        raise MalformedEvent("message_id: missing (it is the idempotency key; set it on every message)")
    if len(message_id) > 100:
        raise MalformedEvent("message_id: longer than 100 characters")
    if len(origin.sender) > 100:  # the publisher's login: tickets remember it with the message id
        raise MalformedEvent("user_id: longer than 100 characters")
    if message.content_type not in (None, "", "application/json"):
        raise MalformedEvent(f"content_type: {message.content_type!r}, expected application/json")
    raw = body if isinstance(body, (bytes, bytearray)) else str(body).encode("utf-8")
    if len(raw) > MAX_BODY:
        raise MalformedEvent(f"body: {len(raw)} bytes, the limit is {MAX_BODY}")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"body: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"body: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise MalformedEvent(f"body: must be a JSON object, got {type(value).__name__}")
    reply_to = (message.properties or {}).get("reply_to") or None
    return value, message_id, reply_to, origin


def rejection_receipts(message, reason: str, bad_input: bool = True) -> list[Outgoing]:
    """A publisher that asked for receipts hears why its message made no ticket, as it would hear of one.

    Bad input is told word for word (the field and why). A message that kept failing on our side is
    told so plainly: the internal error stays in the dead letter for the operators.
    """
    props = message.properties or {}
    message_id, reply_to = props.get("message_id"), props.get("reply_to")
    if not (message_id and reply_to):  # no id: nothing the publisher could match the answer to
        return []
    if not bad_input:
        reason = ("intake could not process it (an error on our side, retried and then parked for the "
                  "operators); it made no ticket yet: send it again later with the same message id")
    event = rejection(message_id, reason)
    return [Outgoing(exchange="", routing_key=reply_to, body=seal(event, SCHEMAS).encode("utf-8"),
                     message_id=event.event_id, type=event.name)]


def on_submission(**kwargs):
    """Urgent (common/lanes.py): the resident's acknowledgement waits on this handler."""
    return ReliableConsumer.decorator(EXCHANGE, ("submit.*",), decode_submission, queue_name=QUEUE,
                                      on_dead_letter=rejection_receipts, urgent=True, **kwargs)

"""The event envelope every service speaks, and the checks at both ends.

Producers are strict: the whole envelope and its `data` must match the schema
the producing service declares for that event. Consumers are tolerant: they
read the envelope and only the fields of `data` they need (`unknown=EXCLUDE`).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Event:
    """What a domain function returns: an event it caused, not yet sent."""
    name: str
    ticket_id: str
    data: Mapping[str, Any]
    correlation_id: str | None = None
    version: int = 1
    occurred_at: datetime = field(default_factory=utcnow)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Envelope(Schema):
    """Strict: what a producer is allowed to put on the wire."""
    class Meta:
        unknown = RAISE

    event_id = fields.UUID(required=True)
    event = fields.String(required=True)
    version = fields.Integer(required=True, strict=True)
    occurred_at = fields.AwareDateTime(required=True, default_timezone=timezone.utc)
    ticket_id = fields.String(required=True)
    correlation_id = fields.String(required=True)
    data = fields.Dict(required=True)


class EnvelopeIn(Envelope):
    """Tolerant: what a consumer needs to read any version of any event."""
    class Meta:
        unknown = EXCLUDE


class Strict(Schema):
    """Base of a producer's event schemas: an unknown field is an error."""
    class Meta:
        unknown = RAISE


class Tolerant(Schema):
    """Base of a consumer's readers: fields it does not know are ignored."""
    class Meta:
        unknown = EXCLUDE


def example_envelope(event: str, data: dict, event_id: str, occurred_at: str,
                     ticket_id: str = "SDJ-261127-7KQ2M4XA") -> dict:
    """A producer's documented example of one of its events (used by contract tests)."""
    return {"event_id": event_id, "event": event, "version": 1, "occurred_at": occurred_at,
            "ticket_id": ticket_id, "correlation_id": ticket_id, "data": data}


class MalformedEvent(ValueError):
    """Input that can never be processed, however often it is retried."""


def seal(event: Event, schemas: Mapping[str, Schema]) -> str:
    """Validate an event against its producer's strict schema; return the JSON on the wire."""
    schema = schemas.get(event.name)
    if schema is None:
        raise ValueError(f"event {event.name!r} is not declared by this service")
    errors = schema.validate(event.data)
    if errors:
        raise ValidationError({"data": errors})
    # the envelope's own fields come from `Event`, typed and defaulted there: no second validation
    return json.dumps({
        "event_id": event.event_id,
        "event": event.name,
        "version": event.version,
        "occurred_at": event.occurred_at.astimezone(timezone.utc).isoformat(),
        "ticket_id": event.ticket_id,
        "correlation_id": event.correlation_id or event.ticket_id,
        "data": event.data,
    }, ensure_ascii=False, default=_json_default)


def decode_json(body: Any) -> Any:
    """A message body as JSON (bytes and text are decoded; anything else is taken as decoded already)."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedEvent(f"body is not UTF-8: {exc}") from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise MalformedEvent(f"body is not JSON: {exc}") from None
    return body


def open_envelope(body: Any) -> dict:
    """Decode and check an incoming envelope; MalformedEvent says what is wrong."""
    body = decode_json(body)
    if not isinstance(body, dict):
        raise MalformedEvent(f"body must be a JSON object, got {type(body).__name__}")
    try:
        return _ENVELOPE_IN.load(body)
    except ValidationError as exc:
        raise MalformedEvent(f"bad envelope: {exc.messages}") from None


_ENVELOPE_IN = EnvelopeIn()
_readers: dict[type, Schema] = {}


def read_data(envelope: Mapping, schema: type[Schema]) -> dict:
    """Load an event's data with the consumer's own tolerant schema (a class; one instance is kept)."""
    reader = _readers.get(schema)
    if reader is None:
        reader = _readers[schema] = schema()
    try:
        return reader.load(envelope["data"], unknown=EXCLUDE)
    except ValidationError as exc:
        raise MalformedEvent(f"{envelope.get('event')}: bad data {exc.messages}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")

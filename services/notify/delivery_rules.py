"""What becomes of a delivery after a try that failed: pure rules, no database, no clock, no randomness of
their own (the courier passes the time and a random number in; tests pass their own).

- A temporary failure (connection refused, timeout, SMTP 4xx, gateway 5xx, 408 or 429) leaves the delivery
  pending: tried again 2**attempts seconds later, at most `max_backoff` (DELIVERY_MAX_BACKOFF_SECONDS,
  600), each wait drawn within ±20 % so that a backlog does not come back in lockstep; for as long as
  `patience` (DELIVERY_PATIENCE_SECONDS, 6 hours) from its first try on this channel. The last try is
  made when patience runs out.
- Out of patience, or refused for good (SMTP 5xx, a permanent gateway 4xx, a channel this instance
  does not have): the delivery fails on this channel, and the message falls back to the first channel
  of CHANNELS the recipient has an address for and that was not tried for this message yet.
- No such channel left: the message could not be delivered at all (`notification_failed`).

Patience and back-off are real seconds, never scaled by SLA_SCALE: they are about how long a mail
server or a gateway may be down, not about the deadlines of a ticket.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

CONTACT_FIELDS = {"email": "email", "sms": "phone"}  # channel -> the field of a contact it sends to
KNOWN_CHANNELS = tuple(CONTACT_FIELDS)
URGENT_TEMPLATES = ("ack", "merged")  # the acknowledgement of a request: sent before anything else waiting
PATIENCE_SECONDS = 6 * 3600.0
MAX_BACKOFF_SECONDS = 600.0
JITTER = 0.2  # each wait is drawn within ±20 % of its nominal length


@dataclass(frozen=True)
class Retry:
    """Pending again: tried at `at`."""
    at: datetime


@dataclass(frozen=True)
class FallBack:
    """Failed on this channel: the message goes on by `channel`, to `address`."""
    channel: str
    address: str


@dataclass(frozen=True)
class GiveUp:
    """Failed on every channel the recipient could be reached by: `notification_failed`."""
    channels_tried: tuple[str, ...]


Step = Retry | FallBack | GiveUp


def is_urgent(template: str) -> bool:
    """The resident is waiting to hear their request was received: the courier claims these first."""
    return template in URGENT_TEMPLATES


def parse_channels(value: Any) -> tuple[str, ...]:
    """CHANNELS: `email,sms` (or a YAML list) -> ("email", "sms"); the order is the preference."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    kinds = []
    for item in items:
        kind = str(item).strip().lower()
        if not kind:
            continue
        if kind not in CONTACT_FIELDS:
            raise ValueError(f"CHANNELS: {kind!r} is not a channel; known: {', '.join(KNOWN_CHANNELS)}")
        if kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


def channel_order(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The channels of this instance, preferred first: CHANNELS; the deprecated CHANNEL (NOTIFY_CHANNEL),
    when set, goes first. Neither set: email."""
    preferred = parse_channels(config.get("CHANNEL") or "")
    kinds = preferred + tuple(k for k in parse_channels(config.get("CHANNELS") or "") if k not in preferred)
    return kinds or ("email",)


def address_for(channel: str, contact: Mapping[str, Any] | None) -> str | None:
    """The recipient's address on `channel`, or None."""
    if not contact or channel not in CONTACT_FIELDS:
        return None
    value = contact.get(CONTACT_FIELDS[channel])
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def first_channel(channels: Iterable[str], contact: Mapping[str, Any] | None,
                  skip: Iterable[str] = ()) -> tuple[str, str] | None:
    """(channel, address): the first of `channels`, not in `skip`, the contact has an address for."""
    skip = set(skip)
    for channel in channels:
        if channel in skip:
            continue
        address = address_for(channel, contact)
        if address is not None:
            return channel, address
    return None


def backoff_seconds(attempts: int, max_backoff: float, rand: float) -> float:
    """The wait after `attempts` tries: 2**attempts seconds, at most `max_backoff`, drawn within ±JITTER
    (`rand` in [0, 1)), never above `max_backoff`."""
    nominal = min(2.0 ** min(max(attempts, 0), 62), max_backoff)
    return min(nominal * (1 + JITTER * (2 * rand - 1)), max_backoff)


def after_failure(*, attempts: int, first_tried_at: datetime | None, now: datetime, permanent: bool,
                  tried: Iterable[str], channels: Iterable[str], contact: Mapping[str, Any] | None,
                  patience: timedelta, max_backoff: float, rand: float) -> Step:
    """The next step for a delivery whose try number `attempts` on the last of `tried` just failed.

    `tried`: the channels this message was tried on, in order, this one last; `channels`: this instance's
    channels, preferred first; `contact`: the recipient's addresses (None: it has no other, e.g. staff)."""
    tried = tuple(tried)
    give_up_at = (first_tried_at or now) + patience
    if not permanent and now < give_up_at:
        return Retry(min(now + timedelta(seconds=backoff_seconds(attempts, max_backoff, rand)), give_up_at))
    nxt = first_channel(channels, contact, skip=tried)
    if nxt is not None:
        return FallBack(*nxt)
    return GiveUp(tried)

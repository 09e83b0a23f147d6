"""Duplicates: the same need reported twice goes to the ticket already open, not to a second crew.

A new request is a duplicate of an open ticket of the same category in the same
village, received within the window, when it comes from the same resident, or
when its text is nearly the same as that ticket's (anyone reporting the same
broken pipe). Different categories or villages are never merged.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

WINDOW = timedelta(hours=72)
SAME_TEXT = 0.8  # Jaccard similarity of character bigrams
_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


def bigrams(text: str) -> set[str]:
    cleaned = _NOISE.sub("", text or "").lower()
    return {cleaned[i:i + 2] for i in range(len(cleaned) - 1)} or ({cleaned} if cleaned else set())


def similarity(a: str, b: str) -> float:
    x, y = bigrams(a), bigrams(b)
    return len(x & y) / len(x | y) if x and y else 0.0


def duplicate_of(resident_id: str, description: str, candidates) -> object | None:
    """The open ticket this request repeats, among candidates already narrowed to the same
    category, village and window; the oldest wins so every repeat points at one ticket."""
    for ticket in sorted(candidates, key=lambda t: t.received_at):
        if ticket.resident_id == resident_id or similarity(ticket.description, description) >= SAME_TEXT:
            return ticket
    return None


def window_start(now: datetime) -> datetime:
    return now - WINDOW

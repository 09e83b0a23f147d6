"""The one error intake's pure rules raise about what a request says.

Its own module so that every rule module (tickets.py, attributes.py, open311_forms.py) can raise it
without importing another: each way in answers it its own way (an AMQP submission goes to the
dead-letter queue as MalformedEvent, an Open311 form gets a 400). Rules never raise the transport's
errors themselves.
"""
from __future__ import annotations


class InvalidRequest(ValueError):
    """A request that can never be accepted as it is: the field, and why."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why

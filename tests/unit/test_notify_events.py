"""Which event a delivered message is told as: the acknowledgement has its own, so that whoever needs only it
(dispatch's ledger, the loop monitor) binds it alone."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from services.notify.events import EXAMPLES, SCHEMAS, told_as
from services.notify.templates import STAFF_TEMPLATES


def test_the_acknowledgement_is_told_as_its_own_event() -> None:
    assert told_as("ack") == "resident_acknowledged"


@pytest.mark.parametrize("template", ["survey", "survey_reminder", "closed", "reopened", "cancelled", "escalated",
                                      "merged"])
def test_every_other_message_to_a_resident_is_resident_notified(template: str) -> None:
    assert told_as(template) == "resident_notified"


@pytest.mark.parametrize("template", sorted(STAFF_TEMPLATES))
def test_a_message_to_staff_is_told_as_nothing(template: str) -> None:
    assert told_as(template) is None


def test_resident_acknowledged_carries_only_the_acknowledgement() -> None:
    data = dict(EXAMPLES["resident_acknowledged"]["data"])
    with pytest.raises(ValidationError) as caught:
        SCHEMAS["resident_acknowledged"].load({**data, "template": "survey"})
    assert "template" in caught.value.messages

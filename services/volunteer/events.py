"""Events volunteer publishes on `volunteer.events`: strict schemas and one example each."""
from __future__ import annotations

from marshmallow import fields

from services.common.envelope import Strict, example_envelope


class VolunteerOffered(Strict):
    volunteer_id = fields.String(required=True)
    volunteer_name = fields.String(required=True)
    team_id = fields.String(required=True)
    skill = fields.String(required=True)
    distance = fields.String(required=True)


class VolunteerAnswered(Strict):
    volunteer_id = fields.String(required=True)
    skill = fields.String(required=True)


class OfferExpired(Strict):
    """Nobody answered the offer in time; the next volunteer near the ticket is asked (or match_failed)."""
    volunteer_id = fields.String(required=True)
    skill = fields.String(required=True)


class MatchFailed(Strict):
    skill = fields.String(required=True)
    village_code = fields.String(required=True)
    reason = fields.String(required=True)


SCHEMAS = {"volunteer_offered": VolunteerOffered(), "volunteer_accepted": VolunteerAnswered(),
           "volunteer_declined": VolunteerAnswered(), "offer_expired": OfferExpired(), "match_failed": MatchFailed()}


def _example(event: str, data: dict) -> dict:
    return example_envelope(event, data, "7a0e0c55-45a4-4f0c-a1c6-5b0f0a1e2d33", "2026-11-27T01:00:02+00:00")


EXAMPLES = {
    "volunteer_offered": _example("volunteer_offered", {"volunteer_id": "V004211", "volunteer_name": "张明",
        "team_id": "T0311", "skill": "delivery", "distance": "village"}),
    "volunteer_accepted": _example("volunteer_accepted", {"volunteer_id": "V004211", "skill": "delivery"}),
    "volunteer_declined": _example("volunteer_declined", {"volunteer_id": "V004211", "skill": "delivery"}),
    "offer_expired": _example("offer_expired", {"volunteer_id": "V004211", "skill": "delivery"}),
    "match_failed": _example("match_failed", {"skill": "legal", "village_code": "341323104214",
        "reason": "no volunteer with skill legal free in town 341323104"}),
}

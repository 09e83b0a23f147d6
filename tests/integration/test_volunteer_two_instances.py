"""Two volunteer instances on one PostgreSQL database, matching a burst of requests at once: the loads are
decided by the rows (services/volunteer/loads.py), so nobody is offered more tickets than their max_load,
`volunteers.load` is what the open offers say, and every place the town has is given (a full town is the
database's word, not a cache's). Both instances take part."""
from __future__ import annotations

from collections import Counter

import eventlet
import sqlalchemy as sa

from services.common.database import make_engine
from services.common.migrations import upgrade
from services.dispatch import events as dispatch_events
from services.volunteer.dependencies import Registry
from services.volunteer.models import OPEN_STATES, Offer, VolunteerRow
from services.volunteer.service import VolunteerService
from tests.amqp_helpers import Probe, publish_event
from tests.waiting import wait_until

REQUESTED = dispatch_events.EXAMPLES["volunteer_requested"]  # skill delivery, village 341323104214
TOWN = REQUESTED["data"]["town_code"]
VILLAGE, NEXT_VILLAGE = REQUESTED["data"]["village_code"], TOWN + "215"
REGISTRY = (("VA1", VILLAGE, 1), ("VA2", VILLAGE, 2), ("VA3", VILLAGE, 2), ("VB1", NEXT_VILLAGE, 1),
            ("VB2", NEXT_VILLAGE, 2), ("VC1", "341323105001", 3))  # VC1: another town, never asked
PLACES = 8  # the town's: VA1..VB2
TICKETS = [f"SDJ-LOAD-{number:03d}" for number in range(40)]


def seed(db_url: str) -> None:
    upgrade("volunteer", db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(VolunteerRow.__table__), [
            {"id": vid, "name": f"志愿者{vid}", "team_id": "T1", "village_code": village,
             "town_code": village[:9], "skills": "delivery,errand", "max_load": max_load, "service_points": 0}
            for vid, village, max_load in REGISTRY])
    engine.dispose()


def matched_by(started) -> set[str]:
    """Records the tickets this instance's index was asked about (what this instance worked on)."""
    registry = next(d for d in started.container.extensions if isinstance(d, Registry))
    index, seen = registry.index, set()
    propose = index.match

    def recording(request):
        seen.add(request.ticket_id)
        return propose(request)

    index.match = recording
    return seen


def answered(probe: Probe) -> dict[str, str]:
    """ticket → the volunteer offered it, or "" for match_failed (a relay may send an event twice)."""
    return {e["ticket_id"]: e["data"].get("volunteer_id", "") for e in probe.poll()
            if e.get("event") in ("volunteer_offered", "match_failed")}


def test_two_instances_never_put_a_volunteer_over_max_load(fresh_vhost_uri, postgres_url, start_service):
    seed(postgres_url)
    instances = [start_service(VolunteerService, fresh_vhost_uri, postgres_url) for _ in range(2)]
    worked = [matched_by(started) for started in instances]
    probe = Probe(fresh_vhost_uri, "volunteer.events")
    try:
        pool = eventlet.GreenPool(20)  # a burst: both instances match at once, their caches behind each other
        list(pool.imap(lambda ticket: publish_event(fresh_vhost_uri, "dispatch", REQUESTED, ticket), TICKETS))

        def all_answered():
            outcome = answered(probe)
            return outcome if outcome.keys() == set(TICKETS) else None

        outcome = wait_until(all_answered, timeout=60,
                             message=lambda: f"all {len(TICKETS)} answered (so far {len(answered(probe))})")
    finally:
        probe.close()

    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        rows = {r.id: (r.load, r.max_load) for r in conn.execute(sa.select(VolunteerRow.__table__))}
        offers = conn.execute(sa.select(Offer.__table__.c.ticket_id, Offer.__table__.c.volunteer_id,
                                        Offer.__table__.c.state)).all()
    engine.dispose()

    open_offers = Counter(o.volunteer_id for o in offers if o.state in OPEN_STATES)
    for vid, (load, max_load) in rows.items():
        assert open_offers[vid] <= max_load, f"{vid} holds {open_offers[vid]} tickets, max_load {max_load}"
        assert load == open_offers[vid], f"{vid}: load {load}, open offers {open_offers[vid]}"
    assert sum(open_offers.values()) == PLACES  # every place in the town given, once
    assert len(offers) == PLACES and len({o.ticket_id for o in offers}) == PLACES  # one offer per ticket
    assert {t: v for t, v in outcome.items() if v} == {o.ticket_id: o.volunteer_id for o in offers}
    assert Counter(outcome.values())[""] == len(TICKETS) - PLACES  # the rest: match_failed
    assert all(worked), f"tickets each instance worked on: {[len(w) for w in worked]}"
    assert set().union(*worked) == set(TICKETS)

"""Volunteer offers below e2e: decline and expiry ask the next volunteer near the TICKET, cancellation frees
the volunteer, and nothing happens twice, driven through the real handlers, database, outbox and inbox.

The ticket is in village A. A1 lives in A and can carry one ticket; B1 and B2 live in village B of the same
town. While A1 is busy with another ticket, the offer goes to B1 (same town); once A1 is free again and B1
says no, or lets the offer lapse, the next one asked must be A1 (the ticket's own village), not B2 (B1's).

Loads are the database's (`volunteers.load`); the index is a cache each instance keeps. Two workers on one
database file stand for two instances: what one changed the other's index learns from the rows, and no
volunteer is ever offered more than max_load.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from services.common.clock import ManualClock
from services.common.envelope import open_envelope
from services.common.staff import VOLUNTEER, Principal
from services.volunteer.dependencies import fill_index
from services.volunteer.matching import VolunteerIndex
from services.volunteer.models import OPEN_STATES, Offer, VolunteerRow
from services.volunteer.service import VolunteerService
from tests.service_layer import Worker

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc)
TOWN, OTHER_TOWN = "341323104", "341323105"
VILLAGE_A, VILLAGE_B = TOWN + "214", TOWN + "215"
OFFER_MINUTES, SCALE = 10, 0.5  # an offer waits 10 × 0.5 = 5 minutes here
WAIT = timedelta(minutes=OFFER_MINUTES * SCALE)


class SignedIn:
    """Stands in for the token check: the `request` an HTTP handler gets is the volunteer's id."""

    def of(self, request) -> Principal:
        return Principal(subject=request, role=VOLUNTEER, area=TOWN)


def instance(tmp_path) -> Worker:
    """A volunteer instance on the test's database (one file per test), its index built as the Registry does."""
    index = VolunteerIndex()
    worker = Worker(VolunteerService, tmp_path, clock=ManualClock(T0, scale=SCALE), index=index, staff=SignedIn(),
                    config={"OFFER_MINUTES": OFFER_MINUTES})
    with worker.db.transaction() as s:
        fill_index(index, s)
    worker.index = index
    return worker


@pytest.fixture
def w(tmp_path) -> Worker:
    worker = Worker(VolunteerService, tmp_path)
    with worker.db.transaction() as s:
        for vid, village, town, max_load in (("A1", VILLAGE_A, TOWN, 1), ("B1", VILLAGE_B, TOWN, 2),
                                             ("B2", VILLAGE_B, TOWN, 2), ("C1", OTHER_TOWN + "001", OTHER_TOWN, 2)):
            s.add(VolunteerRow(id=vid, name=f"志愿者{vid}", team_id="T1", village_code=village, town_code=town,
                               skills="errand,delivery", max_load=max_load, service_points=0))
    worker.engine.dispose()
    return instance(tmp_path)


@pytest.fixture
def w2(w, tmp_path) -> Worker:
    """A second instance on the same database."""
    return instance(tmp_path)


def dispatch_event(event: str, ticket_id: str, data: dict, event_id: str | None = None) -> dict:
    """A dispatch event as the consumer hands it to a handler (decoded and checked)."""
    return open_envelope(json.dumps({
        "event_id": event_id or str(uuid.uuid4()), "event": event, "version": 1,
        "occurred_at": T0.isoformat(), "ticket_id": ticket_id, "correlation_id": ticket_id, "data": data}))


def requested(ticket_id: str, village: str = VILLAGE_A) -> dict:
    return dispatch_event("volunteer_requested", ticket_id, {
        "skill": "errand", "village_code": village, "town_code": TOWN, "priority": 1, "exclude": []})


def cancelled(ticket_id: str) -> dict:
    return dispatch_event("ticket_cancelled", ticket_id, {
        "state": "cancelled", "ticket_version": 4, "assignee_id": None, "assignee_name": None,
        "by": "resident", "reason": "no longer needed"})


def closed(ticket_id: str) -> dict:
    return dispatch_event("ticket_closed", ticket_id, {"satisfied": True, "comment": "", "how": "resident"})


def offers(w: Worker, ticket_id: str) -> list[tuple[str, str]]:
    """(volunteer, state) of the ticket's offers, in the order they were made."""
    with w.db.transaction() as s:
        return [(o.volunteer_id, o.state) for o in s.scalars(
            select(Offer).where(Offer.ticket_id == ticket_id).order_by(Offer.id))]


def offered_to(w: Worker, ticket_id: str) -> list[tuple[str, str]]:
    """(volunteer, distance) of every volunteer_offered for the ticket."""
    return [(e["data"]["volunteer_id"], e["data"]["distance"])
            for _, e in w.sent("volunteer_offered") if e["ticket_id"] == ticket_id]


def stored_loads(w: Worker) -> dict[str, int]:
    with w.db.transaction() as s:
        return {row.id: row.load for row in s.scalars(select(VolunteerRow).order_by(VolunteerRow.id))}


def open_offers(w: Worker) -> dict[str, int]:
    """Open (offered or accepted) offers per volunteer, counted from the offers."""
    with w.db.transaction() as s:
        held = {vid: 0 for vid in s.scalars(select(VolunteerRow.id))}
        for offer in s.scalars(select(Offer).where(Offer.state.in_(OPEN_STATES))):
            held[offer.volunteer_id] = held.get(offer.volunteer_id, 0) + 1
        return held


def loads(w: Worker) -> dict[str, int]:
    """The loads in the instance's index, checked against the rows and against the open offers."""
    cached = {vid: w.index.load_of(vid) for vid in ("A1", "B1", "B2", "C1")}
    assert cached == stored_loads(w) == open_offers(w), "the cache, the rows and the offers disagree"
    return cached


def points(w: Worker, vid: str) -> int:
    with w.db.transaction() as s:
        return s.get(VolunteerRow, vid).service_points


def b1_holds_the_ticket(w: Worker) -> None:
    """A1 is busy with K0, so K goes to B1 in the next village; then K0 closes and A1 is free again."""
    w.call("find_volunteer", requested("K0"))
    w.call("find_volunteer", requested("K"))
    assert offered_to(w, "K0") == [("A1", "village")]
    assert offered_to(w, "K") == [("B1", "town")]
    assert w.call("accept_offer", "A1", "K0")[0] == 200
    w.call("finish_offers", [closed("K0")])
    assert loads(w) == {"A1": 0, "B1": 1, "B2": 0, "C1": 0}


def test_an_offer_remembers_the_tickets_place_and_when_it_expires(w):
    w.call("find_volunteer", requested("K"))
    with w.db.transaction() as s:
        offer = s.scalars(select(Offer).where(Offer.ticket_id == "K")).one()
        assert (offer.volunteer_id, offer.village_code, offer.town_code) == ("A1", VILLAGE_A, TOWN)
        assert offer.expires_at.replace(tzinfo=timezone.utc) == T0 + WAIT  # OFFER_MINUTES × SLA_SCALE


def test_after_a_decline_the_next_volunteer_is_found_near_the_ticket_not_near_the_decliner(w):
    b1_holds_the_ticket(w)
    status, _, body = w.call("decline_offer", "B1", "K")
    assert status == 200 and json.loads(body)["offered_to"] == "A1"  # B2 lives next to B1; A1 next to the ticket
    assert offered_to(w, "K") == [("B1", "town"), ("A1", "village")]
    assert offers(w, "K") == [("B1", "declined"), ("A1", "offered")]
    assert loads(w) == {"A1": 1, "B1": 0, "B2": 0, "C1": 0}


def test_an_unanswered_offer_expires_once_and_goes_to_the_next_volunteer_near_the_ticket(w):
    b1_holds_the_ticket(w)
    w.clock.at = T0 + WAIT - timedelta(seconds=1)
    assert w.call("expire_offers") == 0
    assert offers(w, "K") == [("B1", "offered")]

    w.clock.at = T0 + WAIT
    assert w.call("expire_offers") == 1
    assert w.call("expire_offers") == 0  # the next tick, or another instance: already done
    assert w.service("expire_offers").expire_offers() == 0
    assert [e["data"] for _, e in w.sent("offer_expired")] == [{"volunteer_id": "B1", "skill": "errand"}]
    assert offers(w, "K") == [("B1", "expired"), ("A1", "offered")]
    assert offered_to(w, "K") == [("B1", "town"), ("A1", "village")]
    assert loads(w) == {"A1": 1, "B1": 0, "B2": 0, "C1": 0}

    status, _, _ = w.call("accept_offer", "B1", "K")  # too late: the offer is gone
    assert status == 404
    assert w.call("accept_offer", "A1", "K")[0] == 200
    w.clock.advance(days=1)
    assert w.call("expire_offers") == 0  # an accepted offer never expires
    assert offers(w, "K") == [("B1", "expired"), ("A1", "accepted")]


def test_a_clock_jump_expires_each_offer_in_turn_until_nobody_near_the_ticket_is_left(w):
    w.call("find_volunteer", requested("K"))
    assert offered_to(w, "K") == [("A1", "village")]
    w.clock.advance(hours=3)  # far past every deadline: each new offer waits its own time from now
    assert w.call("expire_offers") == 1
    assert offers(w, "K") == [("A1", "expired"), ("B1", "offered")]
    w.clock.advance(minutes=OFFER_MINUTES * SCALE)
    assert w.call("expire_offers") == 1
    w.clock.advance(minutes=OFFER_MINUTES * SCALE)
    assert w.call("expire_offers") == 1
    assert w.call("expire_offers") == 0

    assert offers(w, "K") == [("A1", "expired"), ("B1", "expired"), ("B2", "expired")]  # C1: another town
    assert [e["data"]["volunteer_id"] for _, e in w.sent("offer_expired")] == ["A1", "B1", "B2"]
    failed = [e["data"] for _, e in w.sent("match_failed")]
    assert failed == [{"skill": "errand", "village_code": VILLAGE_A,
                       "reason": f"no volunteer with skill errand free in town {TOWN}"}]
    assert loads(w) == {"A1": 0, "B1": 0, "B2": 0, "C1": 0}
    events = [e["event"] for _, e in w.sent() if e["ticket_id"] == "K"]
    assert events == ["volunteer_offered", "offer_expired", "volunteer_offered", "offer_expired",
                      "volunteer_offered", "offer_expired", "match_failed"]


def test_a_cancelled_ticket_releases_its_volunteers_without_points_and_a_redelivery_changes_nothing(w):
    b1_holds_the_ticket(w)
    assert w.call("accept_offer", "B1", "K")[0] == 200
    w.call("find_volunteer", requested("K2"))  # an open, unanswered offer of another ticket
    assert offers(w, "K2") == [("A1", "offered")]

    for ticket in ("K", "K2"):
        event = cancelled(ticket)
        w.call("release_offers", event)
        w.call("release_offers", event)  # redelivered
    assert offers(w, "K") == [("B1", "released")]
    assert offers(w, "K2") == [("A1", "released")]
    assert loads(w) == {"A1": 0, "B1": 0, "B2": 0, "C1": 0}
    assert (points(w, "A1"), points(w, "B1")) == (1, 0)  # A1's point is K0's, closed; none for cancelled K

    w.clock.advance(days=1)
    assert w.call("expire_offers") == 0  # a released offer does not expire and asks nobody
    w.call("finish_offers", [closed("K")])  # a close after the cancel: nothing open to finish
    assert points(w, "B1") == 0 and not w.sent("offer_expired")
    assert offered_to(w, "K2") == [("A1", "village")]


def test_a_redelivered_request_makes_one_offer(w):
    event = requested("K")
    w.call("find_volunteer", event)
    w.call("find_volunteer", event)
    assert offers(w, "K") == [("A1", "offered")]
    assert len(w.sent("volunteer_offered")) == 1
    assert loads(w)["A1"] == 1


def test_a_redelivered_close_gives_one_point(w):
    w.call("find_volunteer", requested("K"))
    assert w.call("accept_offer", "A1", "K")[0] == 200
    event = closed("K")
    w.call("finish_offers", [event])
    w.call("finish_offers", [event])
    assert offers(w, "K") == [("A1", "done")] and points(w, "A1") == 1
    assert loads(w)["A1"] == 0


def test_one_relay_round_of_closings_frees_each_volunteer_once(w):
    """dispatch's lifecycle digest brings a round's closings in one call; a repeat inside it changes nothing."""
    w.call("find_volunteer", requested("K0"))
    w.call("find_volunteer", requested("K"))
    assert w.call("accept_offer", "A1", "K0")[0] == 200 and w.call("accept_offer", "B1", "K")[0] == 200
    k0 = closed("K0")
    w.call("finish_offers", [k0, closed("K"), k0])
    assert offers(w, "K0") == [("A1", "done")] and offers(w, "K") == [("B1", "done")]
    assert (points(w, "A1"), points(w, "B1")) == (1, 1)
    assert loads(w) == {"A1": 0, "B1": 0, "B2": 0, "C1": 0}


def test_offers_made_before_they_knew_their_place_are_passed_on_near_their_volunteer(w):
    """volunteer_0002 backfills the place from the volunteer; one whose volunteer is gone has none."""
    with w.db.transaction() as s:
        for ticket, vid in (("OLD", "B1"), ("ORPHAN", "GONE")):
            s.add(Offer(ticket_id=ticket, volunteer_id=vid, skill="errand", state="offered", village_code="",
                        town_code="", expires_at=T0, created_at=T0 - WAIT, updated_at=T0 - WAIT))
        s.get(VolunteerRow, "B1").load = 1  # as volunteer_0003 counts the open offer
    w.index.set_load("B1", 1)  # and the Registry reads it
    assert w.call("expire_offers") == 2
    assert offers(w, "OLD") == [("B1", "expired"), ("B2", "offered")]  # B2 shares B1's village
    assert offered_to(w, "OLD") == [("B2", "village")]
    assert offers(w, "ORPHAN") == [("GONE", "expired")]
    assert [e["data"]["village_code"] for _, e in w.sent("match_failed")] == [""]
    assert loads(w) == {"A1": 0, "B1": 0, "B2": 1, "C1": 0}


# --- two instances, one database: the rows decide, the caches learn ------------------------------------


def test_a_place_another_instance_took_is_not_given_again_and_the_cache_learns_it(w, w2):
    w.call("find_volunteer", requested("K1"))  # instance 1 gives A1's only place
    assert offered_to(w, "K1") == [("A1", "village")]
    assert w2.index.load_of("A1") == 0  # instance 2 has not heard

    w2.call("find_volunteer", requested("K2"))  # its index proposes A1; the row says full
    assert offered_to(w2, "K2") == [("B1", "town")]
    assert loads(w2) == {"A1": 1, "B1": 1, "B2": 0, "C1": 0}
    assert w.index.load_of("B1") == 0  # instance 1 hears at its next resync, or when its index proposes B1


def test_nobody_free_is_the_databases_word_not_the_caches(w, w2):
    for ticket in ("K1", "K2", "K3", "K4", "K5"):  # instance 1 fills the town: A1 1, B1 2, B2 2
        w.call("find_volunteer", requested(ticket))
    assert loads(w) == {"A1": 1, "B1": 2, "B2": 2, "C1": 0}
    w2.call("find_volunteer", requested("K6"))  # instance 2 proposes each in turn, learns they are full
    assert [e["data"]["reason"] for _, e in w2.sent("match_failed")] == [
        f"no volunteer with skill errand free in town {TOWN}"]
    assert loads(w2) == {"A1": 1, "B1": 2, "B2": 2, "C1": 0}

    w2.call("release_offers", cancelled("K1"))  # instance 2 frees A1; instance 1's index still says full
    assert w.index.load_of("A1") == 1
    w.call("find_volunteer", requested("K7"))  # before saying nobody, instance 1 re-reads the town
    assert offered_to(w, "K7") == [("A1", "village")]
    assert len(w.sent("match_failed")) == 1  # K6's, and no other
    assert loads(w) == {"A1": 1, "B1": 2, "B2": 2, "C1": 0}


def test_the_resync_brings_what_other_instances_changed(w, w2):
    w.call("find_volunteer", requested("K1"))
    w.call("find_volunteer", requested("K2"))
    assert (w2.index.load_of("A1"), w2.index.load_of("B1")) == (0, 0)
    assert w2.call("resync_loads") == 2
    assert loads(w2) == {"A1": 1, "B1": 1, "B2": 0, "C1": 0}
    w.call("release_offers", cancelled("K1"))
    w2.call("resync_loads")
    assert loads(w2) == {"A1": 0, "B1": 1, "B2": 0, "C1": 0}


def test_loads_never_pass_max_load_whichever_instance_answers(w, w2):
    """Alternating instances, neither told of the other's offers but by the rows: the town's 5 places are given
    once each, and every request after that fails; a place given back through one is found by the other."""
    for number in range(8):
        (w, w2)[number % 2].call("find_volunteer", requested(f"K{number}"))
    offered = [e["data"]["volunteer_id"] for _, e in w.sent("volunteer_offered")]  # one outbox: one database
    assert sorted(offered) == ["A1", "B1", "B1", "B2", "B2"]
    assert len(w.sent("match_failed")) == 3
    assert stored_loads(w) == open_offers(w) == {"A1": 1, "B1": 2, "B2": 2, "C1": 0}

    holder = dict(offers(w, "K0"))  # K0 went to A1 (instance 1 was first)
    assert holder == {"A1": "offered"}
    status, _, body = w2.call("decline_offer", "A1", "K0")  # nobody else free: A1 is free, K0 unmatched
    assert status == 200 and json.loads(body)["offered_to"] is None
    assert loads(w2) == {"A1": 0, "B1": 2, "B2": 2, "C1": 0}
    w.call("find_volunteer", requested("K9"))  # instance 1's index may still say A1 is full
    assert offers(w, "K9") == [("A1", "offered")]
    assert stored_loads(w) == open_offers(w) == {"A1": 1, "B1": 2, "B2": 2, "C1": 0}
    for x in (w, w2):
        x.call("resync_loads")
        assert loads(x) == {"A1": 1, "B1": 2, "B2": 2, "C1": 0}


def test_a_volunteer_gone_from_the_registry_is_forgotten(w):
    with w.db.transaction() as s:
        s.delete(s.get(VolunteerRow, "A1"))
    w.call("find_volunteer", requested("K"))  # the index still proposes A1 first
    assert offered_to(w, "K") == [("B1", "town")]
    assert "A1" not in w.index

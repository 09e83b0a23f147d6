"""Who may do what with a ticket: dispatch's and intake's rules, and residents' proofs in notify."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from services.common.staff import Forbidden, Principal
from services.dispatch import access as dispatch_access
from services.intake import access as intake_access
from services.common import gateways
from services.notify import replies

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
GRID = "341323104214-G10"
WORKER = f"W-{GRID}-1"


def case(**changes):
    return SimpleNamespace(**{"id": "SDJ-1", "grid_code": GRID, "village_code": GRID[:12], "county_code": "341323",
                              "assignee_id": WORKER, "supervisor_id": None, "department": "civil", **changes})


def who(role, area, subject="someone", department=None):
    return Principal(subject, role, area, department)


# --- dispatch -------------------------------------------------------------------------------

def test_only_the_assignee_works_a_ticket_and_the_refusal_names_nobody():
    dispatch_access.may_work(who("grid_worker", GRID, WORKER), case(), "accept")
    for other in (who("grid_worker", GRID, "W-other"), who("county_dispatcher", "341323", WORKER + "x")):
        with pytest.raises(Forbidden) as caught:
            dispatch_access.may_work(other, case(), "accept")
        assert WORKER not in str(caught.value)
    with pytest.raises(Forbidden, match="a supervisor may not accept"):
        dispatch_access.may_work(who("supervisor", "3413", WORKER), case(), "accept")


def test_a_map_point_is_placed_by_a_dispatcher_of_its_county_only():
    unplaced = case(grid_code=None, village_code=None, assignee_id="centre-341323")
    dispatch_access.may_place(who("county_dispatcher", "341323"), unplaced)
    for outsider in (who("county_dispatcher", "341324"), who("town_dispatcher", "341323104"),
                     who("grid_worker", GRID), who("supervisor", "3413")):
        with pytest.raises(Forbidden):
            dispatch_access.may_place(outsider, unplaced)


def test_staff_of_the_area_and_the_assignee_read_a_ticket_others_do_not():
    for reader in (who("grid_worker", GRID, WORKER), who("village_cadre", GRID[:12]), who("supervisor", "3413"),
                   who("town_dispatcher", "341323104"), who("department_staff", "341323", department="civil")):
        dispatch_access.may_read(reader, case())
    for outsider in (who("grid_worker", "341323104214-G11"), who("county_dispatcher", "341324"),
                     who("department_staff", "341323", department="health"), who("volunteer", "3413")):
        with pytest.raises(Forbidden):
            dispatch_access.may_read(outsider, case())


# --- intake -----------------------------------------------------------------------------------

def ticket(**changes):
    return SimpleNamespace(**{"id": "SDJ-1", "grid_code": GRID, "village_code": GRID[:12], "county_code": "341323",
                              "closed_at": None, **changes})


def test_the_contact_is_for_those_who_call_back_in_the_area_while_open_and_a_few_days_after():
    caller = who("grid_worker", GRID, WORKER)
    intake_access.may_read_contact(caller, ticket(), NOW, 7)
    intake_access.may_read_contact(caller, ticket(closed_at=NOW - timedelta(days=6)), NOW, 7)
    with pytest.raises(Forbidden, match="closed more than 7 days ago"):
        intake_access.may_read_contact(caller, ticket(closed_at=NOW - timedelta(days=8)), NOW, 7)
    for outsider in (who("grid_worker", "341323104214-G11"), who("supervisor", "3413"), who("admin", "3413"),
                     who("volunteer", GRID)):
        with pytest.raises(Forbidden):
            intake_access.may_read_contact(outsider, ticket(), NOW, 7)


def test_contact_reads_are_listed_for_supervisors_and_admins_only():
    intake_access.may_audit(who("supervisor", "341323"))
    with pytest.raises(Forbidden):
        intake_access.may_audit(who("county_dispatcher", "341323"))


# --- gateways and residents' answers (common/gateways.py, notify/replies.py) -----------------

GATEWAYS = {"sms": ["old-secret-0123456789", "new-secret-0123456789"]}
BODY = b'{"ticket_id": "SDJ-1"}'


def headers(secret="new-secret-0123456789", at=NOW, gateway="sms", body=BODY):
    stamp = str(int(at.timestamp()))
    return {"X-Sdj-Gateway": gateway, "X-Sdj-Timestamp": stamp,
            "X-Sdj-Signature": gateways.signature(secret, stamp, body)}


def test_a_gateway_call_signed_with_any_current_secret_is_authentic():
    for secret in GATEWAYS["sms"]:
        name, signature = gateways.verify_gateway(headers(secret), BODY, GATEWAYS, NOW)
        assert name == "sms" and len(signature) == 64


@pytest.mark.parametrize("bad, why", [
    (dict(secret="guessed-secret-0123456"), "does not verify"),
    (dict(at=NOW - timedelta(minutes=6)), "from our clock"),
    (dict(at=NOW + timedelta(minutes=6)), "from our clock"),
    (dict(gateway="fax"), "not a gateway we know"),
    (dict(body=b'{"ticket_id": "SDJ-2"}'), "does not verify"),
], ids=["wrong-secret", "too-old", "future", "unknown-gateway", "body-changed"])
def test_a_forged_or_stale_gateway_call_is_refused(bad, why):
    with pytest.raises(gateways.ForgedCall, match=why):
        gateways.verify_gateway(headers(**bad), BODY, GATEWAYS, NOW)


def test_an_answer_counts_only_with_the_survey_code_from_the_ticket_s_contact():
    survey = SimpleNamespace(code="K7Q2MXPA23")
    contact = SimpleNamespace(phone="13812345678", email="wang@village.example.cn")
    for sender in ("+86 138 1234 5678", "8613812345678", "Wang@Village.example.cn"):
        replies.check_reply(survey, contact, "k7q2mxpa23", sender)
    with pytest.raises(replies.NotTheResident, match="survey_code"):
        replies.check_reply(survey, contact, "K7Q2MXPA24", "13812345678")
    with pytest.raises(replies.NotTheResident, match="sender"):
        replies.check_reply(survey, contact, "K7Q2MXPA23", "13900000000")
    with pytest.raises(replies.NotTheResident, match="survey_code"):
        replies.check_reply(SimpleNamespace(code=None), contact, "", "13812345678")


def test_survey_codes_do_not_repeat():
    assert len({replies.new_survey_code() for _ in range(2000)}) == 2000

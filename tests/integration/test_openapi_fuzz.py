"""Every staff API, fuzzed against its own OpenAPI document (schemathesis), without a token and with one:
never a 5xx, and every answer (status, content type, body, headers) is one the document describes."""
from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

from services.dispatch import service as dispatch
from services.intake import events as intake_events
from services.intake import service as intake
from services.notify import service as notify
from services.outreach import service as outreach
from services.volunteer import service as volunteer
from songdaojia.loop import signed_headers
from songdaojia.peers import free_port
from tests.amqp_helpers import publish_event
from tests.integration.conftest import start
from tests.waiting import wait_until

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
TICKET = "SDJ-261127-7KQ2M4XA"  # the documents' example ticket: it exists, so some calls go all the way
GRID = "341323104214-G10"


@pytest.fixture(scope="module")
def urls(amqp_uri, tmp_path_factory, keys):
    base = tmp_path_factory.mktemp("fuzz")
    started = {name: start(keys, cls, amqp_uri, f"sqlite:///{base / (name + '.db')}", **extra) for name, cls, extra in (
        ("intake", intake.IntakeService, {}), ("dispatch", dispatch.DispatchService, {}),
        ("volunteer", volunteer.VolunteerService, {}), ("outreach", outreach.OutreachService, {}),
        ("notify", notify.NotifyService, {"CHANNEL": "email", "EMAIL": {"host": "127.0.0.1", "port": free_port(),
                                                                        "sender": "s@localhost"}}))}
    publish_event(amqp_uri, "intake", intake_events.EXAMPLES["ticket_received"], TICKET)
    supervisor = {"Authorization": f"Bearer {keys.token('S-1', 'supervisor', '3413')}"}
    wait_until(lambda: requests.get(f"{started['dispatch'].url}/tickets/{TICKET}", headers=supervisor).ok,
               message="the example ticket in dispatch")
    yield {name: service.url for name, service in started.items()}
    for service in started.values():
        service.stop()


def signed_in(keys, role: str, area: str, subject: str = "W-341323104214-G10-1") -> dict:
    return {"Authorization": f"Bearer {keys.token(subject, role, area)}"}


def check(case, url: str, *identities: dict) -> None:
    for headers in ({}, *identities):
        case.validate_response(case.call(base_url=url, headers=headers), checks=CHECKS)


@schemathesis.openapi.from_dict(dispatch.OPENAPI).parametrize()
@FUZZ
def test_dispatch_answers_as_documented(case, urls, keys):
    check(case, urls["dispatch"], signed_in(keys, "grid_worker", GRID), signed_in(keys, "county_dispatcher", "341323"))


@schemathesis.openapi.from_dict(intake.OPENAPI).parametrize()
@FUZZ
def test_intake_answers_as_documented(case, urls, keys):
    check(case, urls["intake"], signed_in(keys, "grid_worker", GRID), signed_in(keys, "supervisor", "3413"))
    if case.path == "/tickets/{ticket_no}/cancel":  # and as a gateway forwarding a resident's withdrawal
        check_signed(case, urls["intake"], keys)


@schemathesis.openapi.from_dict(volunteer.OPENAPI).parametrize()
@FUZZ
def test_volunteer_answers_as_documented(case, urls, keys):
    check(case, urls["volunteer"], signed_in(keys, "volunteer", "341323104214", "V000001"),
          signed_in(keys, "town_dispatcher", "341323104"))


@schemathesis.openapi.from_dict(outreach.OPENAPI).parametrize()
@FUZZ
def test_outreach_answers_as_documented(case, urls, keys):
    check(case, urls["outreach"], signed_in(keys, "grid_worker", GRID),
          signed_in(keys, "village_cadre", "341323104214", "C-341323104214-1"),
          signed_in(keys, "household_head", "341323104214", "H3413231042140001"))


@schemathesis.openapi.from_dict(notify.OPENAPI).parametrize()
@FUZZ
def test_notify_answers_as_documented(case, urls, keys):
    check(case, urls["notify"], signed_in(keys, "village_cadre", "341323104214"))
    if case.path == "/replies":  # and as a gateway that signs what it forwards, whatever the body
        check_signed(case, urls["notify"], keys)


def check_signed(case, url: str, keys) -> None:
    """The call as a gateway makes it: signed, whatever the body."""
    call = case.as_transport_kwargs(base_url=url)
    body = json.dumps(call.pop("json")).encode() if "json" in call else (call.pop("data", b"") or b"")
    body = body.encode() if isinstance(body, str) else body
    call["headers"] = {**call.get("headers", {}), **signed_headers("sms", keys.gateway_secret("sms"), body)}
    case.validate_response(requests.request(data=body, **call), checks=CHECKS)

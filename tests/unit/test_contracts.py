"""Contracts between services, discovered from the code rather than listed by hand.

Producers are strict (their `events.SCHEMAS` and one example envelope per event in
`events.EXAMPLES`); consumers are tolerant (`schemas.py`) and subscribe with
`@on_event(source, *events)`. These tests find every producer and every consumer,
so a new event without an example, or a new consumer without a contract, fails here.
"""
from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
from datetime import datetime
from pathlib import Path

import pytest
from marshmallow import Schema, ValidationError

from services.common.envelope import Envelope, Event, open_envelope, read_data, seal
from services.common.messaging import DigestConsumer, ReliableConsumer

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
APPS = sorted(p.name for p in SERVICES_DIR.iterdir()
              if p.is_dir() and (p / "service.py").exists() and p.name != "common")
SERVICES = [app for app in APPS if (SERVICES_DIR / app / "events.py").exists()]  # what exchanges events
FRONTENDS = ["console"]  # over the services' HTTP APIs: publishes no event, consumes none with a handler

# Consumers of exchanges that are not a service's `<service>.events`: outside systems publish there.
EXTERNAL_INPUTS = {("intake", "receive_submission"): "intake.submissions",
                   ("outreach", "note_receipt"): ""}  # intake's receipts, on outreach's own reply_to queue


def _imported_consumer_schemas():
    from services.dispatch import schemas as dispatch
    from services.intake import schemas as intake
    from services.notify import schemas as notify
    from services.volunteer import schemas as volunteer
    return dispatch, intake, notify, volunteer


_dispatch, _intake, _notify, _volunteer = _imported_consumer_schemas()

# (consumer service, handler, source service, event) -> the tolerant schema the handler reads
# the event's data with, or None when the handler reads only the envelope.
CONSUMER_SCHEMAS: dict[tuple[str, str, str, str], type[Schema] | None] = {
    ("dispatch", "open_case", "intake", "ticket_received"): _dispatch.TicketReceivedIn,
    ("dispatch", "follow_up", "notify", "feedback_received"): _dispatch.FeedbackIn,
    ("dispatch", "note_volunteer", "volunteer", "volunteer_offered"): _dispatch.VolunteerOfferedIn,
    ("dispatch", "note_volunteer", "volunteer", "match_failed"): _dispatch.MatchFailedIn,
    ("dispatch", "note_volunteer", "volunteer", "volunteer_accepted"): _dispatch.VolunteerAnsweredIn,
    ("dispatch", "note_volunteer", "volunteer", "volunteer_declined"): _dispatch.VolunteerAnsweredIn,
    ("dispatch", "note_volunteer", "volunteer", "offer_expired"): _dispatch.VolunteerAnsweredIn,
    ("dispatch", "withdraw", "intake", "ticket_cancelled"): _dispatch.CancelledIn,
    ("dispatch", "call_back_unanswered", "notify", "survey_unanswered"): _dispatch.SurveyUnansweredIn,
    ("dispatch", "note_acknowledged", "notify", "resident_acknowledged"): _dispatch.NotifiedIn,
    ("dispatch", "reach_unnotified", "notify", "notification_failed"): _dispatch.NotificationFailedIn,
    **{("intake", "track_status", "dispatch", name): _intake.TicketStatusChange
       for name in ("ticket_routed", "ticket_accepted", "ticket_in_progress", "ticket_resolved", "ticket_closed",
                    "ticket_reopened", "ticket_escalated", "ticket_returned", "ticket_cancelled", "ticket_filed",
                    "ticket_decided")},
    ("notify", "acknowledge", "intake", "ticket_received"): _notify.TicketReceivedIn,
    ("notify", "tell_merged", "intake", "ticket_merged"): _notify.TicketMergedIn,
    ("notify", "ask_for_follow_up", "dispatch", "ticket_resolved"): _notify.TicketResolvedIn,
    ("notify", "tell_outcome", "dispatch", "ticket_closed"): _notify.TicketOutcomeIn,
    ("notify", "tell_outcome", "dispatch", "ticket_reopened"): _notify.TicketOutcomeIn,
    ("notify", "tell_cancelled", "dispatch", "ticket_cancelled"): _notify.TicketCancelledIn,
    ("notify", "tell_escalated", "dispatch", "ticket_escalated"): _notify.TicketEscalatedIn,
    ("volunteer", "find_volunteer", "dispatch", "volunteer_requested"): _volunteer.VolunteerRequestedIn,
    ("volunteer", "finish_offers", "dispatch", "ticket_closed"): None,
    ("volunteer", "release_offers", "dispatch", "ticket_cancelled"): None,
}


# --- discovery -------------------------------------------------------------------------------


def producer(service: str):
    return importlib.import_module(f"services.{service}.events")


def service_class(service: str) -> type:
    module = importlib.import_module(f"services.{service}.service")
    classes = [obj for obj in vars(module).values()
               if inspect.isclass(obj) and obj.__module__ == module.__name__
               and isinstance(getattr(obj, "name", None), str)]
    assert len(classes) == 1, f"services.{service}.service should define one service class: {classes}"
    return classes[0]


def reliable_consumers(service: str) -> list[tuple[str, object, ReliableConsumer]]:
    """(handler name, handler, entrypoint) for every ReliableConsumer on the service class."""
    found = []
    for name, method in inspect.getmembers(service_class(service), inspect.isfunction):
        for entrypoint in getattr(method, "nameko_entrypoints", set()):
            if isinstance(entrypoint, ReliableConsumer):
                found.append((name, method, entrypoint))
    return found


def subscriptions() -> set[tuple[str, str, str, str]]:
    """(consumer, handler, source, event) for every event a service consumes from another's `.events`."""
    triples = set()
    for service in SERVICES:
        for handler, _method, entrypoint in reliable_consumers(service):
            source, _, kind = entrypoint.exchange_name.partition(".")
            if kind != "events":
                continue
            for event in entrypoint.events if isinstance(entrypoint, DigestConsumer) else entrypoint.routing_keys:
                triples.add((service, handler, source, event))
    return triples


def digest_subscriptions() -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """(consumer, handler, source, digest, events it reads there) for every digest a service consumes."""
    return sorted((service, handler, entrypoint.exchange_name.partition(".")[0],
                   entrypoint.digest, entrypoint.events)
                  for service in SERVICES for handler, _method, entrypoint in reliable_consumers(service)
                  if isinstance(entrypoint, DigestConsumer))


SUBSCRIPTIONS = sorted(subscriptions())
PRODUCED = sorted((service, name) for service in SERVICES for name in producer(service).SCHEMAS)


def example(source: str, event: str) -> dict:
    return copy.deepcopy(producer(source).EXAMPLES[event])


def with_extra_fields(data: dict) -> list[tuple[str, dict]]:
    """The data with one unknown field added: at the top, and inside each nested object."""
    variants = [("data", {**data, "added_in_a_later_version": "x"})]
    for key, value in data.items():
        if isinstance(value, dict):
            variants.append((f"data.{key}", {**data, key: {**value, "added_in_a_later_version": "x"}}))
    return variants


# --- discovery itself is trustworthy ----------------------------------------------------------


def test_every_service_with_a_service_module_is_checked():
    assert SERVICES == ["dispatch", "intake", "notify", "outreach", "volunteer"]
    assert sorted(set(APPS) - set(SERVICES)) == FRONTENDS


@pytest.mark.parametrize("app", FRONTENDS)
def test_a_frontend_neither_publishes_nor_handles_events(app):
    """The console only follows dispatch.work to wake its pages (services/console/feed.py); it holds no outbox."""
    from services.common.outbox import Outbox
    cls = service_class(app)
    assert not [name for name, value in vars(cls).items() if isinstance(value, Outbox)]
    assert reliable_consumers(app) == []


def test_discovery_finds_the_known_subscriptions():
    assert ("dispatch", "open_case", "intake", "ticket_received") in SUBSCRIPTIONS
    assert ("volunteer", "finish_offers", "dispatch", "ticket_closed") in SUBSCRIPTIONS
    assert len(SUBSCRIPTIONS) == 32


def test_discovery_finds_the_digests_consumed():
    assert sorted(d[:4] for d in digest_subscriptions()) == [("dispatch", "follow_up", "notify", "residents"),
                                                             ("dispatch", "note_acknowledged", "notify", "residents"),
                                                             ("dispatch", "open_case", "intake", "received"),
                                                             ("intake", "track_status", "dispatch", "lifecycle"),
                                                             ("notify", "ask_for_follow_up", "dispatch", "lifecycle"),
                                                             ("notify", "tell_outcome", "dispatch", "lifecycle"),
                                                             ("volunteer", "finish_offers", "dispatch", "lifecycle")]


@pytest.mark.parametrize("consumer,handler,source,digest,events", digest_subscriptions())
def test_a_digest_consumed_is_declared_by_its_source_and_carries_every_event_read_there(consumer, handler, source,
                                                                                         digest, events):
    carried = getattr(producer(source), "DIGESTS", {}).get(digest)
    assert carried is not None, f"{consumer}.{handler} reads {source}'s {digest!r} digest, which it never sends"
    assert set(events) <= set(carried), f"{source}'s {digest!r} digest lacks {sorted(set(events) - set(carried))}"


@pytest.mark.parametrize("service", SERVICES)
def test_a_digest_carries_only_events_its_producer_declares(service):
    for name, events in getattr(producer(service), "DIGESTS", {}).items():
        assert set(events) <= set(producer(service).SCHEMAS), name


def test_every_consumer_reads_a_service_event_exchange_or_a_known_outside_input():
    for service in SERVICES:
        for handler, _method, entrypoint in reliable_consumers(service):
            if entrypoint.exchange_name.endswith(".events"):
                continue
            assert EXTERNAL_INPUTS.get((service, handler)) == entrypoint.exchange_name, (
                f"{service}.{handler} consumes {entrypoint.exchange_name}, neither an event exchange "
                f"nor a known outside input")


# --- producers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_declared_event_has_exactly_its_example(service):
    events = producer(service)
    assert set(events.EXAMPLES) == set(events.SCHEMAS)
    for name, envelope in events.EXAMPLES.items():
        assert envelope["event"] == name


@pytest.mark.parametrize("service,name", PRODUCED)
def test_producer_example_passes_the_strict_envelope_and_its_own_schema(service, name):
    envelope = example(service, name)
    loaded = Envelope().load(envelope)
    assert loaded["event"] == name and loaded["version"] == 1
    assert producer(service).SCHEMAS[name].load(envelope["data"]) is not None


@pytest.mark.parametrize("service,name", PRODUCED)
def test_sealing_the_example_data_gives_back_the_example(service, name):
    envelope = example(service, name)
    event = Event(name, envelope["ticket_id"], envelope["data"],
                  correlation_id=envelope["correlation_id"], version=envelope["version"],
                  occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
                  event_id=envelope["event_id"])
    assert json.loads(seal(event, producer(service).SCHEMAS)) == envelope


@pytest.mark.parametrize("service,name", PRODUCED)
def test_strict_producer_schema_refuses_an_unknown_field(service, name):
    schema = producer(service).SCHEMAS[name]
    for where, data in with_extra_fields(example(service, name)["data"]):
        with pytest.raises(ValidationError) as caught:
            schema.load(data)
        messages = caught.value.messages
        if where != "data":
            messages = messages[where.split(".", 1)[1]]
        assert messages == {"added_in_a_later_version": ["Unknown field."]}, where


# --- consumers ---------------------------------------------------------------------------------


def test_every_subscription_has_a_contract_and_every_contract_a_subscription():
    discovered, declared = set(SUBSCRIPTIONS), set(CONSUMER_SCHEMAS)
    assert discovered - declared == set(), "consumers without a contract test"
    assert declared - discovered == set(), "contracts of consumers that no longer exist"


@pytest.mark.parametrize("consumer,handler,source,event", SUBSCRIPTIONS)
def test_the_contract_table_names_the_schema_the_handler_really_uses(consumer, handler, source, event):
    code = inspect.getsource(getattr(service_class(consumer), handler))
    schema = CONSUMER_SCHEMAS[(consumer, handler, source, event)]
    if schema is None:
        assert "read_data" not in code
    else:
        assert f"read_data(envelope, {schema.__name__})" in code


@pytest.mark.parametrize("consumer,handler,source,event", SUBSCRIPTIONS)
def test_consumer_subscribes_only_to_events_its_source_declares(consumer, handler, source, event):
    assert source in SERVICES, f"{consumer}.{handler} listens to {source}.events: no such service"
    assert event in producer(source).SCHEMAS, (
        f"{consumer}.{handler} listens for {source}:{event}, which {source} never emits")


@pytest.mark.parametrize("consumer,handler,source,event", SUBSCRIPTIONS)
def test_consumer_reads_the_producer_example(consumer, handler, source, event):
    wire = example(source, event)
    envelope = open_envelope(json.dumps(wire, ensure_ascii=False).encode("utf-8"))
    assert envelope["event"] == event and envelope["ticket_id"] == wire["ticket_id"]
    schema = CONSUMER_SCHEMAS[(consumer, handler, source, event)]
    if schema is None:
        return
    data = read_data(envelope, schema)
    for key, value in data.items():  # what the consumer reads is what the producer said
        if key in wire["data"] and isinstance(value, (str, int, bool)):
            assert value == wire["data"][key], key
    assert set(data) <= set(schema().fields)


@pytest.mark.parametrize("consumer,handler,source,event", SUBSCRIPTIONS)
def test_consumer_tolerates_a_field_added_by_the_producer(consumer, handler, source, event):
    schema = CONSUMER_SCHEMAS[(consumer, handler, source, event)]
    wire = example(source, event)
    expected = read_data(open_envelope(wire), schema) if schema else None
    for where, data in with_extra_fields(wire["data"]):
        envelope = open_envelope(json.dumps({**wire, "data": data, "added_to_envelope": 1}))
        if schema is not None:
            loaded = read_data(envelope, schema)
            assert "added_in_a_later_version" not in loaded
            # a raw `fields.Dict` passes the new key through untouched; that is tolerated too
            assert without_added_field(loaded) == expected, where


def without_added_field(value):
    if isinstance(value, dict):
        return {k: without_added_field(v) for k, v in value.items() if k != "added_in_a_later_version"}
    return value


# --- a service sending to intake's front door ---------------------------------------------------


@pytest.mark.parametrize("key_groups, vulnerable", [("elderly_alone", True), ("", False)])
def test_a_need_found_on_a_visit_is_a_submission_intake_takes(key_groups, vulnerable):
    """outreach publishes each need found as an outside system would (register.submission): the body must load
    with intake's own reader and validate against the JSON Schema intake publishes for outside systems."""
    import jsonschema
    from types import SimpleNamespace

    from services.intake.schemas import Submission
    from services.outreach.register import submission
    need = SimpleNamespace(id="4f1e0c55-45a4-4f0c-a1c6-5b0f0a1e2d35", category="R01", description="屋顶漏雨，需要维修",
                           attributes='{"urgent": "yes"}', found_at=datetime.fromisoformat("2026-12-02T02:10:00+00:00"))
    home = SimpleNamespace(id="HH00000001", village_code="341323104214", address="幸福路 12 号", phone="13812345678",
                           email=None, key_groups=key_groups)
    body = submission(need, home)
    loaded = Submission().load(body)
    assert (loaded["channel"], loaded["resident"]["phone"], loaded["resident"]["vulnerable"]) == (
        "grid_visit", "13812345678", vulnerable)
    schema = json.loads((SERVICES_DIR / "intake" / "submission.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(body, schema)


@pytest.mark.parametrize("kind", ["received", "merged", "rejected"])
def test_outreach_reads_every_receipt_intake_sends(kind):
    from services.intake.events import RECEIPT_EXAMPLES
    from services.outreach.schemas import ReceiptIn
    example = RECEIPT_EXAMPLES[kind]
    loaded = read_data(open_envelope(json.dumps(example).encode()), ReceiptIn)
    assert (loaded["status"], loaded["ticket_no"], loaded["message_id"]) == (
        kind, example["data"]["ticket_no"], example["data"]["message_id"])
    assert (loaded["reason"] is not None) == (kind == "rejected")


# --- boundaries ----------------------------------------------------------------------------------


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = package.split(".")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


def foreign_imports(service: str) -> list[str]:
    others = {p.name for p in SERVICES_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    others -= {service, "common"}
    found = []
    for path in sorted((SERVICES_DIR / service).rglob("*.py")):
        package = ".".join(("services",) + path.relative_to(SERVICES_DIR).parent.parts)
        for name in imported_modules(path, package):
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] in others:
                found.append(f"{path.relative_to(SERVICES_DIR)} imports {name}")
    return found


def test_import_scan_sees_a_foreign_import(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("from services.dispatch.events import SCHEMAS\nfrom ..volunteer import matching\n"
                      "import services.common.envelope\n")
    assert imported_modules(sample, "services.intake") == {
        "services.dispatch.events", "services.volunteer", "services.common.envelope"}


@pytest.mark.parametrize("service", APPS)
def test_service_imports_no_other_service(service):
    assert foreign_imports(service) == []


def test_common_plumbing_imports_no_service():
    assert foreign_imports("common") == []

"""kill -9 in the middle of a run loses no ticket and sends no resident a second acknowledgement."""
from __future__ import annotations

import re
from collections import Counter

import requests

from services.dispatch.areas import AreaMap
from services.intake.client import IntakeClient
from songdaojia.loop import Console, Observer, Residents
from tests.amqp_helpers import amqp_queue_messages
from tests.waiting import wait_until

from .requests_helpers import submission

TICKETS = 200
VILLAGES = AreaMap.load().villages()
ACK_SUBJECT = re.compile(r"已受理 工单号 (SDJ-\d{6}-[0-9A-Z]{8})")


def stuck_report(observer, stack, console) -> str:
    """What a person would look at when tickets do not close: where each one stands, and why."""
    open_tickets = [t for t, track in observer.snapshot().items() if track.state != "closed"]
    lines = [f"all {TICKETS} closed; states now {Counter(t.state for t in observer.snapshot().values())}",
             f"console errors: {console.errors[:5]}"]
    supervisor = {"Authorization": f"Bearer {stack.secrets.token('supervisor-1', 'supervisor', '3413')}"}
    for ticket_id in open_tickets[:5]:
        r = requests.get(f"{stack.http('dispatch')}/tickets/{ticket_id}", headers=supervisor, timeout=5)
        lines.append(f"{ticket_id}: {r.status_code} {r.text[:1500]}")
    return "\n".join(lines)


def test_kill_9_of_dispatch_with_200_tickets_in_flight_loses_nothing(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    observer = Observer(stack.uri("monitor"))
    console = Console(stack.uri("console-city"), stack.http("dispatch"),
                      token=lambda who, role, area, department=None: stack.secrets.token(
                          who, role, area, department=department))
    residents = Residents(stack.http("notify"), ("mail", stack.secrets.gateway_secret("mail")),
                          unsatisfied_share=0.0)  # same end state every run: closed
    sink.on_message = residents.on_mail
    observer.start(), console.start()
    try:
        with IntakeClient(stack.uri("publisher-channels"), source="fault-test") as client:
            for i in range(TICKETS):
                # 200 households in 200 villages: distinct requests, none a duplicate of another
                client.submit("hotline", submission(i, category="301" if i % 2 else "801",
                                                    village_code=VILLAGES[i].code, address=VILLAGES[i].name))

        # dispatch dies with no warning while tickets sit between every pair of states: once from
        # outside at a random moment, then at its two worst moments (crash points, see services/common/faults.py)
        dispatch = running_stack.procs
        wait_until(lambda: observer.count_in("routed") >= 20, timeout=60, message="offers under way")
        dispatch["dispatch"].kill()
        in_flight = [TICKETS - observer.count_in("closed")]
        for crash_at in ("consumer.before_ack:40", "relay.before_mark:4"):
            running_stack.restart("dispatch", SDJ_CRASH_AT=crash_at)
            wait_until(lambda: not dispatch["dispatch"].alive(), timeout=120, message=f"dispatch to die at {crash_at}")
            in_flight.append(TICKETS - observer.count_in("closed"))
        running_stack.restart("dispatch")

        wait_until(lambda: observer.count_in("closed") == TICKETS, timeout=240, interval=0.5,
                   message=lambda: stuck_report(observer, stack, console))
    finally:
        console.stop(), observer.stop(), residents.stop()

    assert min(in_flight) > 0, "dispatch was killed with nothing in flight: the test proved nothing"
    acks = Counter(m.group(1) for m in map(ACK_SUBJECT.search, (str(x["Subject"]) for x in sink.messages)) if m)
    assert len(acks) == TICKETS, "every resident acknowledged"
    assert set(acks.values()) == {1}, f"acknowledged twice: {[t for t, n in acks.items() if n > 1]}"
    subjects = Counter(str(x["Subject"]) for x in sink.messages)  # each names its ticket and what it says
    assert [s for s, n in subjects.items() if n > 1] == [], "a resident got the same message twice"
    tracks = observer.snapshot()
    assert all(t.state == "closed" for t in tracks.values())
    assert console.errors == [] and residents.errors == []
    for service in ("intake", "dispatch", "volunteer", "notify"):
        assert amqp_queue_messages(stack.uri("admin"), f"{service}.dead-letter") == [], service

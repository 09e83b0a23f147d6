"""Service processes that die or freeze mid-run: no ticket is lost, no resident gets a message twice (save what
a notify killed -9 had in hand, measured in the last test), and the loop's recovery is recorded (faults.py)."""
from __future__ import annotations

import random

import pytest

from services.notify.courier import IN_PARALLEL

from .faults import hold, message_id, notify_rows, sending


@pytest.mark.instances(2)
def test_kill_9_of_one_instance_of_each_service_mid_run_loses_nothing(fault_run):
    """Two instances of every service on PostgreSQL; the second of each is killed -9 at its own moment, tickets
    between every pair of states. intake-2 and volunteer-2 stay dead: the first instance alone takes over what
    they had unacknowledged (the broker redelivers it) and their outbox rows (the relays share the table).
    dispatch-2 comes back once the loop has closed tickets without it: an instance rejoins. notify-2 comes back
    too: under its stable instance id it takes back at once the deliveries it had claimed (else they would
    wait out their 120-s lease); what it was sending when it died may reach a resident twice (the courier's
    repeat window, services/notify/courier.py), and only that is allowed to."""
    run, observer = fault_run, fault_run.observer
    run.submit()

    def counted(event):
        return observer.counts.get(event, 0)

    run.wait_for(lambda: counted("ticket_received") >= 40, "requests coming in")
    with run.fault("intake-2 killed -9 (stays dead)"):
        run.kill("intake-2")

    run.wait_for(lambda: counted("ticket_routed") >= 80, "offers under way")
    with run.fault("dispatch-2 killed -9, restarted after 10 tickets closed without it"):
        run.kill("dispatch-2")
        closed = run.closed()
        run.wait_for(lambda: run.closed() >= closed + 10, "tickets closed by dispatch alone")
        run.restart("dispatch-2")

    run.wait_for(lambda: run.closed() >= 50, "tickets closing")
    with run.fault("volunteer-2 killed -9 (stays dead)"):
        run.kill("volunteer-2")

    run.wait_for(lambda: run.closed() >= 80, "more tickets closing")
    with run.fault("notify-2 killed -9, restarted after 20 mails sent without it"):
        run.kill("notify-2")
        in_hand = sending(run.stack, "notify-2")
        mails = len(run.arrivals)
        run.wait_for(lambda: len(run.arrivals) >= mails + 20, "mails sent by notify alone")
        run.restart("notify-2")
    assert len(in_hand) <= IN_PARALLEL
    run.extra["notify-2 had in hand"] = len(in_hand)

    run.wait_all_closed()
    run.check_all(may_repeat=in_hand)


def test_dispatch_frozen_for_20_s_mid_run_loses_nothing(fault_run):
    """SIGSTOP: dispatch keeps its broker connection, its unacknowledged messages and its port, and answers
    nothing; the console's calls time out and are tried again. Then SIGCONT."""
    run = fault_run
    run.submit()
    run.wait_for(lambda: run.observer.count_reached("routed") >= 20, "offers under way")
    with run.fault("dispatch frozen (SIGSTOP) for 20 s"):
        run.running.freeze("dispatch")
        try:
            hold(20)
        finally:
            run.running.thaw("dispatch")
    run.wait_all_closed()
    run.check_all()


BACKLOG = 600  # ack mails: enough for every kill to meet the courier sending
KILLS = 10


@pytest.mark.postgres
@pytest.mark.services("intake", "notify")
def test_kill_9_of_notify_sending_a_backlog_repeats_only_what_it_had_in_hand(fault_run):
    """The repeat rate of email under kill -9, measured honestly. "No resident message twice" cannot hold for
    email when notify dies between the mail server's answer and the commit that records it (courier.py): the
    delivery is claimed under notify's stable instance id, so the restarted notify sends it again, with the
    same Message-ID, which an ordinary mail server delivers. Here: a backlog of BACKLOG acknowledgements
    (intake and notify only, PostgreSQL), notify killed -9 KILLS times while sending it, each time after a
    random number of mails, and restarted. Asserted: every delivery arrives at least once, and every repeat is
    of a mail notify had in hand (claimed, not recorded) at a kill: at most IN_PARALLEL a kill. Recorded: the
    repeats, per kill and per 1,000 mails."""
    run, stack = fault_run, fault_run.stack
    run.tickets = BACKLOG
    rng = random.Random(3413)
    run.kill("notify")  # not sending yet: the acknowledgements pile up while the requests come in
    run.submit(BACKLOG, rate=None)
    run.wait_for(lambda: run.observer.counts.get("ticket_received", 0) >= BACKLOG, "every request received",
                 timeout=180)
    run.restart("notify")

    hands: list[set[str]] = []
    for kill in range(KILLS):
        until = len(run.arrivals) + rng.randint(5, 40)  # a random moment of the sending
        run.wait_for(lambda: len(run.arrivals) >= until, f"mails before kill {kill + 1}")
        fault = run.begin(f"notify killed -9 sending (kill {kill + 1})")
        run.kill("notify")
        hands.append(sending(stack, "notify"))
        fault.in_flight = len(hands[-1])
        run.restart("notify")
        run.end(fault)
    assert len(run.arrivals) < BACKLOG, "the backlog ran out before the last kill: make it bigger"

    every = run.wait_for(lambda: _all_sent(stack, BACKLOG), "every delivery sent", timeout=120)
    arrived = {}
    for _, mid in run.arrivals:
        arrived[mid] = arrived.get(mid, 0) + 1
    assert set(every) <= set(arrived), "every delivery reached the mail server at least once"
    assert all(message_id(m) for m in run.sink.messages)
    repeated = {mid: n - 1 for mid, n in arrived.items() if n > 1}
    # a kill repeats at most the mails it found in hand, each once: a mail sent again was in hand at a kill,
    # and is repeated no more often than kills found it in hand; or a try of it failed on our side after the
    # server took it (our timeout while the server answered late: courier.py's other repeat), recorded as the
    # delivery's error
    failed_once = {row[0] for row in notify_rows(stack, "SELECT message_id FROM deliveries WHERE error IS NOT NULL")}
    assert all(len(hand) <= IN_PARALLEL for hand in hands)
    beyond = {mid: n for mid, n in repeated.items()
              if n > sum(mid in hand for hand in hands) and mid not in failed_once}
    assert beyond == {}, f"repeated more often than it was in hand at a kill, and no try of it failed: {beyond}"
    total, repeats = len(run.arrivals), sum(repeated.values())
    run.extra.update({"kills": KILLS, "mails": total, "mails repeated": repeats,
                      "repeated after a failed try": len(failed_once & set(repeated)),
                      "repeats per kill": round(repeats / KILLS, 2),
                      "repeats per 1000 mails": round(1000 * repeats / total, 2),
                      "in hand at each kill": [len(h) for h in hands]})


def _all_sent(stack, count: int) -> list[str] | None:
    rows = notify_rows(stack, "SELECT message_id, state FROM deliveries")
    if len(rows) >= count and all(state == "sent" for _, state in rows):
        return [mid for mid, _ in rows]
    return None

"""The courier: claims due deliveries, sends them through their channel, records how each went.

A handler only writes a pending `Delivery` in its transaction (and wakes the courier once that
commits), on the first channel of CHANNELS (NOTIFY_CHANNELS, e.g. `email,sms`: the order is the
preference) the recipient has an address for. An acknowledgement (delivery_rules.is_urgent) goes first:
claimed before any other due delivery, with URGENT_RESERVE slots only it may use; and, when this
instance has a slot free, written already claimed by it (as step 1 would) and sent as soon as the
handler's transaction commits. Other deliveries are not claimed while an acknowledgement is being
written or sent; while acknowledgements keep coming (common/lanes.py) at most BETWEEN_ACKS of them are
in flight, in the gaps; none waits more than PATIENCE seconds for a turn. The courier of every notify
instance then, for each delivery:

1. claims it, in a short transaction of its own, committed before anything is sent: up to as many
   due deliveries as it has free slots (IN_PARALLEL per instance) go from `pending` to `sending`,
   with `claimed_by` (this instance's id), a lease `claimed_until` (now + COURIER_LEASE_SECONDS,
   120 s by default), `attempts` + 1 and, the first time, `first_tried_at`. On PostgreSQL the rows are
   picked `FOR UPDATE SKIP LOCKED`, so two couriers take different rows without waiting for each other;
   the UPDATE re-checks that each row is still due, which is also what keeps two couriers on one SQLite
   file apart (one writer at a time). A delivery claimed under a lease that has not run out is nobody
   else's.
2. sends it with its stable message id; a send that lasts half the lease is given up (a temporary
   failure), so no send outlives its claim while the instance runs;
3. records the outcome in a second transaction, fenced on its claim (the row is still `sending`
   with this `claimed_by` and `attempts`: a claim that lapsed and was taken over records nothing):
   either `sent`, with the reference and the peer's answer (the SMTP reply to DATA, the gateway's
   HTTP status), and `resident_notified` (`resident_acknowledged` for the acknowledgement: events.told_as)
   in the outbox in the same transaction (not for a message to
   staff: templates.STAFF_TEMPLATES); or a failed try, decided by delivery_rules.after_failure:
   - temporary (connection refused, timeout, SMTP 4xx, gateway 5xx, 408 or 429): pending again after
     2**attempts seconds, at most DELIVERY_MAX_BACKOFF_SECONDS (600), within ±20 %; for as long as
     DELIVERY_PATIENCE_SECONDS (6 hours, real seconds, not scaled by SLA_SCALE) from its first try on
     this channel;
   - out of patience, or refused for good (SMTP 5xx, a permanent gateway 4xx): `failed` on this
     channel and, in the same transaction, a new pending delivery on the next channel of CHANNELS the
     recipient has an address for and that was not tried for this message (message id: the first
     one's + `.<channel>`, `fallback_of` the failed one; the same subject and body: the templates have
     one text for every channel); staff are written to by email only, with no fallback;
   - no channel left: `notification_failed` (with `channels_tried`), and for the ticket's own resident
     dispatch opens a `reach` task: a person phones them.
   On PostgreSQL marking sent is one statement (UPDATE … RETURNING feeding the outbox INSERT,
   autocommit) on a connection taken before the send: one round trip after the peer's answer.

So two instances never send one delivery at the same time, and a delivery marked sent is not sent
again. The promise is at least once per message (on one of its channels, else a person is asked to
call). The only repeat window: the peer took the message and the outcome was not committed, because
the instance died (kill -9, power loss; crash point `courier.before_mark`), was frozen for longer than
the lease, or could not reach its database for as long (the outcome write is retried until the lease
is nearly over), between the peer's answer and that commit: a few milliseconds (median about 5 ms,
two instances sending 300 acks; measured on PostgreSQL, one instance killed -9 at a random moment of a
300-mail backlog and restarted: 30 repeated mails in 26 kills, 0 to 5 a kill, 0 without kills).
Whoever claims the delivery after its lease ran out sends it again, on the same channel, with the same
message id:
- SMS: the gateway gets the message id as `Idempotency-Key`; a gateway that honours it (as the
  contract asks, remembering keys for at least DELIVERY_PATIENCE_SECONDS: a repeat after our timeout
  comes at most that late) answers the repeat without sending it: the resident gets one SMS.
- email: the repeat carries the same `Message-ID`, but ordinary mail servers deliver it: the
  resident gets the mail twice (a mail client that threads by Message-ID may show it once).
A try that failed on our side after the peer took the message (the SMTP server accepted DATA but
its answer was lost; the gateway answered after our timeout) is retried as a failure: a repeat too,
with the same per-channel outcome; and should that channel then run out of patience, the fallback
sends the message once more on the next channel (the resident hears it by email and by SMS).

A claim is taken over before its lease ends only by the same instance id after a restart: when it
starts, a courier releases the claims held under its own id (what it had in hand when it died is
sent again at once). The id is INSTANCE_ID from the config when set (give each instance a stable
name); else, on SQLite (one instance per database file), the host's name, so a restart behaves as
before claims existed; else (PostgreSQL) one per process, and a dead instance's claims wait out
their lease. Instances' clocks must agree to well within the lease.
"""
from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import time
from datetime import timedelta

import eventlet
from eventlet.event import Event as GreenEvent
from eventlet.greenpool import GreenPool
from nameko.extensions import DependencyProvider
from sqlalchemy import DateTime, Integer, String, Text, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from services.common.clock import as_utc
from services.common.database import doing, make_engine
from services.common.envelope import Event, seal, utcnow
from services.common.faults import crash_point
from services.common.lanes import PATIENCE, Lanes
from services.common.outbox import Outbox

from . import delivery_rules as rules
from .channels import DeliveryFailed, Receipt, channel_from_config
from .events import SCHEMAS, told_as
from .models import Delivery, OutboxRow
from .templates import recipient_of

log = logging.getLogger(__name__)
IN_PARALLEL = 20  # sends in flight per instance
URGENT_RESERVE = 5  # of those, kept for acknowledgements (delivery_rules.is_urgent): they never wait for a slot
BETWEEN_ACKS = 2  # other deliveries in flight at most while acknowledgements keep coming
REFILL = 5  # a finished send wakes the courier once this many slots are free (else the next poll claims)
POLL_SECONDS = 0.5
LEASE_SECONDS = 120.0
STOP_TRYING = 5.0  # seconds an outcome write is retried once the service is stopping


def channel_configs(config: dict) -> list[dict]:
    """The config of each channel of this instance, preferred first (CHANNELS; see delivery_rules.channel_order),
    each from its own block (EMAIL, SMS)."""
    return [{"kind": kind, **(config.get(kind.upper()) or {})} for kind in rules.channel_order(config)]


def _seconds(config: dict, key: str, default: float) -> float:
    value = config.get(key)
    seconds = default if value in (None, "") else float(value)
    if seconds < 0:
        raise ValueError(f"{key}: a number of seconds, not {value!r}")
    return seconds


def instance_id(configured: str | None, dialect: str) -> tuple[str, bool]:
    """This courier's name in `claimed_by`, and whether it is stable (the same after a restart)."""
    if configured:
        return str(configured)[:64], True
    host = socket.gethostname()[:40]
    if dialect == "sqlite":  # one instance per database file
        return f"{host}:sqlite", True
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}", False


class Courier(DependencyProvider):
    lanes = Lanes()  # the process's urgent lane (shared with its consumers)

    def setup(self) -> None:
        config = self.container.config
        self.engine = make_engine(config["DB_URL"], pool_size=IN_PARALLEL + 2,
                                  service=self.container.service_name)
        self.channels = {cfg["kind"]: channel_from_config(cfg, keep_open=IN_PARALLEL)  # preferred first
                         for cfg in channel_configs(config)}
        self.patience = timedelta(seconds=_seconds(config, "DELIVERY_PATIENCE_SECONDS", rules.PATIENCE_SECONDS))
        self.max_backoff = _seconds(config, "DELIVERY_MAX_BACKOFF_SECONDS", rules.MAX_BACKOFF_SECONDS)
        self._random = random.Random()
        self.lease = timedelta(seconds=float(config.get("COURIER_LEASE_SECONDS") or LEASE_SECONDS))
        self.postgres = self.engine.dialect.name == "postgresql"
        self.instance, self.stable_id = instance_id(config.get("INSTANCE_ID"), self.engine.dialect.name)
        self.pool = GreenPool(IN_PARALLEL)
        self._outbox_insert = insert(OutboxRow.__table__)
        self.in_flight: dict[int, bool] = {}  # delivery id -> urgent
        self.promised = 0  # slots held for acknowledgements written claimed, their transactions not yet over
        self.claiming = 0  # slots held for the claim under way
        self._background_turn = time.monotonic()  # when the rest last had its turn to be claimed
        self._follow_ups_turn = time.monotonic()  # when the follow-up timer last had its turn
        self.sent = 0  # deliveries this instance sent and marked sent (its share of the work)
        self._wakeup = GreenEvent()
        self._running = True
        self._released = False  # the claims of this id's last life given back: only then are acks written claimed

    def start(self) -> None:
        outbox = next(d for d in self.container.dependencies if isinstance(d, Outbox))
        self.outbox = outbox.get_dependency(None)
        self.relay_wake = outbox.relay.wake  # what the outbox does after a commit that added events
        self.exchange = f"{self.container.service_name}.events"
        if self.stable_id:
            doing("courier")
            try:
                self.release_own()
            except Exception:
                log.exception("courier %s: could not release its earlier claims (they wait out their lease)",
                              self.instance)
        # nameko starts a container's extensions side by side: the acknowledge consumer may already be writing
        # acks while release_own runs. One written claimed before it finished would be released by it and
        # claimed again: sent twice, with no kill to blame. Until now they were written pending.
        self._released = True
        self.container.spawn_managed_thread(self.run, identifier="courier")

    def stop(self) -> None:
        self._running = False
        self.wake()
        self.pool.waitall()

    kill = stop

    def wake(self) -> None:
        if not self._wakeup.ready():
            self._wakeup.send(True)

    def get_dependency(self, worker_ctx):
        return self

    def run(self) -> None:
        doing("courier")
        while self._running:
            self._wakeup = GreenEvent()
            free = IN_PARALLEL - self.busy()
            if free > 0:
                lease_ends = time.monotonic() + self.lease.total_seconds()  # no later than the claim's own
                self.claiming = free  # held while the claim waits on the database: a handler may not take them
                try:
                    claimed = self.claim_in_turn(free)
                except Exception:
                    log.exception("courier could not claim deliveries")
                    claimed = []
                finally:
                    self.claiming = 0
                for d in claimed:
                    self.in_flight[d.id] = d.urgent
                    self.pool.spawn_n(self._deliver, d, lease_ends)
            self._wakeup.wait(timeout=POLL_SECONDS)

    def busy(self) -> int:
        """Slots taken: sends in flight, and those held for a claim or a transaction under way. Never more than
        IN_PARALLEL: a restart sends again at most that many (what was claimed and not recorded)."""
        return len(self.in_flight) + self.promised + self.claiming

    def claimed_at_once(self) -> dict | None:
        """For an acknowledgement being written: the claim it is written with, or None when no slot is free (it is
        written pending). The slot is held until its transaction ends: committed, it is sent at once
        (`send_claimed`); rolled back, the slot is free again (`not_claimed`)."""
        if not (self._running and self._released) or self.busy() >= IN_PARALLEL:
            return None
        self.promised += 1
        now = utcnow()
        return {"state": "sending", "claimed_by": self.instance, "claimed_until": now + self.lease, "attempts": 1,
                "first_tried_at": now}

    def send_claimed(self, d) -> None:
        """Send a delivery written claimed by this courier, now committed. Should this instance stop first, the
        claim is released when it starts again (or runs out), as any claim in hand."""
        self.promised -= 1
        if not self._running:
            return
        self.in_flight[d.id] = d.urgent
        self.pool.spawn_n(self._deliver, d, time.monotonic() + self.lease.total_seconds())

    def not_claimed(self) -> None:
        """The transaction that was to write a delivery claimed rolled back: its slot is free."""
        self.promised -= 1

    def urgent_in_hand(self) -> bool:
        """An acknowledgement is being written or sent: background work waits."""
        return bool(self.lanes.urgent) or any(self.in_flight.values())

    def follow_ups_may_run(self) -> bool:
        """The follow-up timer's turn (surveys, reminders): not while an acknowledgement is in hand, unless it
        has waited PATIENCE seconds."""
        now = time.monotonic()
        if self.urgent_in_hand() and now - self._follow_ups_turn < PATIENCE:
            return False
        self._follow_ups_turn = now
        return True

    def background_room(self) -> int:
        """How many more of the other deliveries may be in flight now: none while an acknowledgement is in hand,
        BETWEEN_ACKS while acknowledgements keep coming (the gaps between them), else all but URGENT_RESERVE;
        and all but URGENT_RESERVE once they have waited PATIENCE seconds for a turn (delayed, never starved)."""
        waited = time.monotonic() - self._background_turn >= PATIENCE
        if waited or (self.lanes.quiet() and not self.urgent_in_hand()):
            cap = IN_PARALLEL - URGENT_RESERVE
        elif self.urgent_in_hand():
            cap = 0
        else:  # acknowledgements keep coming, none in hand now: a gap
            cap = BETWEEN_ACKS
        return cap - sum(1 for urgent in self.in_flight.values() if not urgent)

    def claim_in_turn(self, free: int) -> list:
        """Acknowledgements first, then the rest in the order written, as much of it as `background_room` lets
        (common/lanes.py: in a surge, this process's time is the acknowledgements')."""
        room = min(free, self.background_room())
        if room > 0:
            self._background_turn = time.monotonic()
        claimed = self.claim(room) if room > 0 else []  # urgent ones first in its order
        if free - len(claimed) > 0 and len(claimed) == max(room, 0):  # more acknowledgements may be waiting
            claimed += self.claim(free - len(claimed), urgent_only=True)
        return claimed

    def claim(self, limit: int, urgent_only: bool = False) -> list:
        """Claim up to `limit` due deliveries for this instance (committed when this returns), as plain rows:
        acknowledgements first, then by id."""
        now = utcnow()
        with self.engine.begin() as conn:
            rows = conn.execute(CLAIM_URGENT if urgent_only else CLAIM, {
                "now": now, "limit": limit, "mine": list(self.in_flight), "me": self.instance,
                "until": now + self.lease}).all()
        return sorted(rows, key=lambda r: (not r.urgent, r.id))

    def release_own(self) -> int:
        """At start: what this instance id had claimed (it died sending) is due again, now."""
        with self.engine.begin() as conn:
            released = conn.execute(update(Delivery).where(
                Delivery.state == "sending", Delivery.claimed_by == self.instance)
                .values(state="pending", claimed_until=None)).rowcount
        if released:
            log.warning("courier %s: %d deliveries it had claimed before it stopped are sent again "
                        "(a resident may get one of them twice)", self.instance, released)
        return released

    def _deliver(self, d, lease_ends: float) -> None:
        doing("courier")  # a green thread of the pool's own
        conn = self._connection_for_the_outcome()
        try:
            try:
                receipt = self._send(d)
            except DeliveryFailed as exc:
                self._record(lambda _conn, failure=exc: self._failed(d, failure), d, lease_ends)
            else:
                crash_point("courier.before_mark")  # sent, not marked: sent again once the lease has run out
                self._record(lambda c: self._sent(d, receipt, c), d, lease_ends, conn)
        except Exception:
            log.exception("courier: delivery %s", d.id)
        finally:
            if conn is not None:
                conn.close()
            self.in_flight.pop(d.id, None)
            if IN_PARALLEL - self.busy() >= REFILL:
                self.wake()

    def _connection_for_the_outcome(self):
        """PostgreSQL: a connection taken (and pinged) before the send, so that recording it costs one
        round trip after the peer's answer: under load every round trip waits its turn among the green
        threads, and that wait is the repeat window. None on SQLite (blocking calls: nothing waits)."""
        if not self.postgres:
            return None
        try:
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as exc:
            log.warning("courier: no database connection before sending (%r); one is taken afterwards", exc)
            return None

    def _send(self, d) -> Receipt:
        channel = self.channels.get(d.channel)
        if channel is None:  # written for a channel this instance does not have (the configuration changed since)
            raise DeliveryFailed(d.channel, "(none)", f"written for {d.channel}, this instance sends by "
                                 f"{', '.join(self.channels)} only", permanent=True)
        limit = self.lease.total_seconds() / 2
        timeout = eventlet.Timeout(limit)
        try:
            if channel.kind == "email":
                return channel.deliver(d.address, d.subject, d.body, d.message_id)
            return channel.deliver(d.address, d.body, d.message_id)
        except eventlet.Timeout as exc:
            if exc is not timeout:
                raise
            raise DeliveryFailed(channel.kind, channel.peer, f"not done within {limit:g} s (half the claim's lease)",
                                 permanent=False) from None
        finally:
            timeout.cancel()

    def _record(self, write, d, lease_ends: float, conn=None) -> None:
        """Write the outcome (`write(conn)`); a database that fails is tried again, on a new connection,
        while the lease lasts (once it has run out another instance may claim the delivery, and send it again),
        for a few seconds only when the service is stopping."""
        delay, stopping_since = 0.2, None
        while True:
            try:
                return write(conn)
            except Exception as exc:
                if not self._running and stopping_since is None:
                    stopping_since = time.monotonic()
                if time.monotonic() + delay > min(lease_ends - 1, (stopping_since or float("inf")) + STOP_TRYING):
                    raise
                log.warning("courier: could not record delivery %s (%r); trying again in %.1f s", d.id, exc, delay)
                conn = None
                eventlet.sleep(delay)
                delay = min(delay * 2, 5)

    def _claim_of(self, d) -> dict:
        """The parameters of STILL_MINE for this claim of the delivery."""
        return {"d_id": d.id, "me": self.instance, "d_attempts": d.attempts}

    def _sent(self, d, receipt: Receipt, conn=None) -> None:
        """Mark it sent and, for a resident, add `resident_acknowledged` (the acknowledgement) or `resident_notified`
        to the outbox: one transaction."""
        now = utcnow()
        mark = {**self._claim_of(d), "ref": receipt.reference[:300], "peer_answer": receipt.answer[:300] or None,
                "sent_now": now}
        name = told_as(d.template)
        event = name and Event(name, d.ticket_id, {
            "template": d.template, "channel": d.channel, "reference": receipt.reference,
            "delivered_at": now.isoformat()}, correlation_id=d.ticket_id)
        row = event and {"event_id": event.event_id, "exchange": self.exchange, "routing_key": event.name,
                         "body": seal(event, SCHEMAS), "created_at": now}
        if self.postgres:
            marked = self._mark_in_one_statement(conn, mark, row)
        else:  # Core statements on a connection: the ORM's bulk-update path cost more than the rest of a send
            with self.engine.begin() as c:
                marked = c.execute(MARK_SENT, mark).rowcount
                if marked and row:
                    c.execute(self._outbox_insert, [row])
            if marked and row:
                self.relay_wake()
        if not marked:
            log.warning("courier %s: delivery %s (%s) was sent after its claim had lapsed; another instance "
                        "took it over, the resident may get it twice", self.instance, d.id, d.message_id)
            return
        self.sent += 1

    def _mark_in_one_statement(self, conn, mark: dict, row: dict | None) -> int:
        """PostgreSQL: the mark and its outbox row as one statement (atomic: a data-modifying WITH), autocommit."""
        statement, values = (MARK_SENT, mark) if row is None else (
            MARK_SENT_AND_TELL, {**mark, **{f"row_{column}": value for column, value in row.items()}})
        if conn is None:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as own:
                count = own.execute(statement, values).rowcount
        else:
            count = conn.execute(statement, values).rowcount
        if count and row:
            self.relay_wake()
        return count

    def _failed(self, d, exc: DeliveryFailed) -> None:
        """A failed try: pending again after its back-off, or failed on this channel and, in the same
        transaction, the message goes on by the next channel (a new delivery) or `notification_failed`."""
        now, error = utcnow(), str(exc)[:2000]
        woken = False
        with Session(self.engine) as s, s.begin():
            first, tried = self._chain(s, d)
            step = rules.after_failure(
                attempts=d.attempts, first_tried_at=as_utc(d.first_tried_at), now=now, permanent=exc.permanent,
                tried=tried, channels=self.channels, contact=_contact(d.contact), patience=self.patience,
                max_backoff=self.max_backoff, rand=self._random.random())
            if isinstance(step, rules.Retry):
                s.execute(STILL_MINE.values(state="pending", error=error, claimed_until=None,
                                            next_attempt_at=step.at), self._claim_of(d))
                return
            if not s.execute(STILL_MINE.values(state="failed", error=error, claimed_until=None),
                             self._claim_of(d)).rowcount:
                return  # the claim lapsed: whoever holds it now decides
            if isinstance(step, rules.FallBack):
                s.add(Delivery(message_id=f"{first}.{step.channel}"[:80], ticket_id=d.ticket_id, template=d.template,
                               channel=step.channel, address=step.address, subject=d.subject, body=d.body,
                               state="pending", attempts=0, next_attempt_at=now, created_at=now,
                               fallback_of=d.id, contact=d.contact, urgent=rules.is_urgent(d.template)))
                log.warning("courier: %s (%s) failed by %s after %d tries, goes on by %s: %s", d.message_id,
                            d.template, d.channel, d.attempts, step.channel, error)
                woken = True
            else:
                self.outbox.add(s, [Event("notification_failed", d.ticket_id, {
                    "template": d.template, "channel": d.channel, "reason": error, "attempts": d.attempts,
                    "channels_tried": list(step.channels_tried), "message_id": first,
                    "recipient": recipient_of(d.template)}, correlation_id=d.ticket_id)])
                log.warning("courier: %s (%s) reached nobody, tried by %s: %s", first, d.template,
                            ", ".join(step.channels_tried), error)
        if woken:
            self.wake()

    def _chain(self, s, d) -> tuple[str, list[str]]:
        """The message's first id, and the channels it was tried on, in order, this delivery's last."""
        first, tried, link = d.message_id, [d.channel], d.fallback_of
        for _ in range(len(rules.KNOWN_CHANNELS) + 1):  # a chain has a delivery per channel at most
            if link is None:
                break
            before = s.execute(select(Delivery.message_id, Delivery.channel, Delivery.fallback_of)
                               .where(Delivery.id == link)).one_or_none()
            if before is None:
                break
            first, link = before.message_id, before.fallback_of
            tried.insert(0, before.channel)
        return first, tried


def _contact(stored: str | None) -> dict | None:
    try:
        contact = json.loads(stored) if stored else None
    except ValueError:
        return None
    return contact if isinstance(contact, dict) else None


CLAIMED = (Delivery.id, Delivery.ticket_id, Delivery.template, Delivery.channel, Delivery.address,
           Delivery.subject, Delivery.body, Delivery.message_id, Delivery.attempts, Delivery.first_tried_at,
           Delivery.fallback_of, Delivery.contact, Delivery.urgent)


def _claim_statement(urgent_only: bool):
    """Built once, with its cache key (built anew for every claim round, its cache key alone was 5 % of notify's
    profile): due deliveries (pending and due, or claimed under a lease that ran out: its courier died), not ours
    still being sent (`mine`: a lease can run out while this instance is frozen), up to `limit`, acknowledgements
    first, locked SKIP LOCKED, claimed for `me` until `until`."""
    now = bindparam("now", type_=DateTime(timezone=True))
    due = or_(and_(Delivery.state == "pending", Delivery.next_attempt_at <= now),
              and_(Delivery.state == "sending", Delivery.claimed_until < now))
    if urgent_only:
        due = and_(Delivery.urgent.is_(True), due)
    # a CTE, computed once: as `id IN (subquery)` PostgreSQL may run the subquery again for every row it
    # updates, and each run skips the rows the last one locked: one claim would take the whole backlog
    picked = (select(Delivery.id).where(due, Delivery.id.not_in(bindparam("mine", expanding=True)))
              .order_by(Delivery.urgent.desc(), Delivery.id).limit(bindparam("limit", type_=Integer))
              .with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED", dialect="postgresql"))
    return (update(Delivery).where(Delivery.id == picked.c.id, due)
            .values(state="sending", claimed_by=bindparam("me", type_=String), claimed_until=bindparam(
                "until", type_=DateTime(timezone=True)), attempts=Delivery.attempts + 1,
                first_tried_at=func.coalesce(Delivery.first_tried_at, now))
            .returning(*CLAIMED))


CLAIM, CLAIM_URGENT = _claim_statement(False), _claim_statement(True)
OUTBOX_COLUMNS = ("event_id", "exchange", "routing_key", "body", "created_at")  # what OutboxWriter.add writes

# A delivery, as long as this claim of it holds (still `sending`, claimed by `me`, on the attempt `d_attempts`):
# an outcome is recorded only through it (Courier._claim_of gives the parameters)
STILL_MINE = update(Delivery).where(Delivery.id == bindparam("d_id", type_=Integer), Delivery.state == "sending",
                                    Delivery.claimed_by == bindparam("me", type_=String),
                                    Delivery.attempts == bindparam("d_attempts", type_=Integer))
# marking it sent, built once (built per send, its cache key and compilation were a third of recording the outcome)
MARK_SENT = (STILL_MINE
             .values(state="sent", reference=bindparam("ref", type_=String), answer=bindparam("peer_answer",
                     type_=String), sent_at=bindparam("sent_now", type_=DateTime(timezone=True)), claimed_until=None))
# PostgreSQL: the mark, and its event into the outbox only if it marked a row (one statement)
MARK_SENT_AND_TELL = insert(OutboxRow).from_select(OUTBOX_COLUMNS, select(
    bindparam("row_event_id", type_=String), bindparam("row_exchange", type_=String),
    bindparam("row_routing_key", type_=String), bindparam("row_body", type_=Text),
    bindparam("row_created_at", type_=DateTime(timezone=True)))
    .select_from(MARK_SENT.returning(Delivery.id).cte("marked")))

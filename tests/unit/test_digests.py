"""Digests (services/common/digests.py): what a relay round sends, and how a consumer splits and settles one."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from services.common.digests import Digest, Part, compose, digest_key, split
from services.common.envelope import MalformedEvent
from services.common.outbox import Relay


def row(n: int, routing_key: str, exchange: str = "dispatch.events") -> SimpleNamespace:
    body = json.dumps({"event_id": f"e-{n}", "event": routing_key, "ticket_id": f"T-{n}", "data": {"名": n}},
                      ensure_ascii=False)
    return SimpleNamespace(id=n, event_id=f"e-{n}", exchange=exchange, routing_key=routing_key, body=body)


def relay(digests) -> Relay:
    return Relay(SimpleNamespace(dialect=SimpleNamespace(name="sqlite")), None, None, digests=digests)


def test_a_round_sends_one_digest_with_its_events_in_order_and_nothing_else():
    rows = [row(1, "ticket_routed"), row(2, "ticket_offered"), row(3, "ticket_accepted"),
            row(4, "ticket_routed", exchange="dispatch.work"), row(5, "ticket_closed")]
    sent = relay({"dispatch.events": {"lifecycle": ("ticket_routed", "ticket_accepted", "ticket_closed")}}
                 ).digests_of(rows)
    assert [(o.exchange, o.routing_key, o.type) for o in sent] == [
        ("dispatch.events", "lifecycle.digest", "lifecycle.digest")]
    assert [e["event_id"] for e in json.loads(sent[0].body)] == ["e-1", "e-3", "e-5"]
    assert json.loads(sent[0].body)[0] == json.loads(rows[0].body)  # each envelope as it is sent alone


def test_a_round_without_a_digest_s_events_sends_no_digest():
    assert relay({"dispatch.events": {"lifecycle": ("ticket_closed",)}}).digests_of([row(1, "ticket_offered")]) == []
    assert relay(None).digests_of([row(1, "ticket_closed")]) == []


def test_the_same_round_sent_again_has_the_same_message_id_and_another_round_another():
    first = compose(['{"a": 1}', '{"b": 2}'], ["e-1", "e-2"])
    assert first == compose(['{"a": 1}', '{"b": 2}'], ["e-1", "e-2"])
    assert first[1] != compose(['{"a": 1}'], ["e-1"])[1]
    assert json.loads(first[0]) == [{"a": 1}, {"b": 2}]
    assert digest_key("lifecycle") == "lifecycle.digest"


def test_split_takes_a_digest_or_one_envelope_and_refuses_anything_else():
    assert split(b'[{"a": 1}, 2]') == [{"a": 1}, 2]  # each item is checked by the consumer, one by one
    assert split('{"a": 1}') == [{"a": 1}]  # a part back from the retry queue
    for bad, why in [(b"\xff", "UTF-8"), (b"[1,", "JSON"), (b"7", "JSON array")]:
        with pytest.raises(MalformedEvent, match=why):
            split(bad)


class Message:
    def __init__(self):
        self.channel, self.headers, self.delivery_info, self.content_type = "ch", {"x-attempt": 2}, {}, "json"
        self.properties, self.settled = {"message_id": "digest-1", "user_id": "dispatch"}, []

    def ack(self):
        self.settled.append("ack")

    def requeue(self):
        self.settled.append("requeue")


def test_a_digest_is_acked_once_when_its_last_part_is_settled():
    message, acked = Message(), []
    digest = Digest(message, 3, on_acked=lambda d: acked.append(d))
    parts = [Part(digest, {"event_id": f"e-{n}"}) for n in range(3)]
    parts[0].ack(), parts[2].ack()
    assert message.settled == [] and acked == []
    parts[1].ack()
    assert message.settled == ["ack"] and acked == [digest]


def test_a_digest_with_a_part_that_could_not_be_parked_is_requeued_whole():
    message, acked = Message(), []
    digest = Digest(message, 2, on_acked=lambda d: acked.append(d))
    first, second = Part(digest, {"event_id": "e-1"}), Part(digest, "not an envelope")
    second.requeue()
    first.ack()
    assert message.settled == ["requeue"] and acked == []


def test_a_part_reads_as_a_message_of_its_envelope_alone():
    message = Message()
    part = Part(Digest(message, 2, on_acked=lambda _d: None), {"event_id": "e-7", "名": "李"})
    assert json.loads(part.body) == {"event_id": "e-7", "名": "李"}
    assert part.properties == {"message_id": "e-7", "user_id": "dispatch"}  # its own id; the sender the digest's
    assert message.properties["message_id"] == "digest-1"
    assert (part.channel, part.headers) == ("ch", {"x-attempt": 2})
    assert Part(Digest(message, 1, on_acked=lambda _d: None), [1]).properties["message_id"] == "digest-1"

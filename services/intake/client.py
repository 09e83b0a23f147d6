"""The small client outside systems use to publish requests to intake (pika).

    with IntakeClient("amqp://guest:guest@127.0.0.1:5672/") as client:
        message_id = client.submit("hotline", {...})

Messages are persistent, carry content type, the publisher's broker login as
`user_id` (the broker checks it; intake knows publishers by it) and a message id
(the idempotency key, per publisher: re-send with the same id after a doubt,
never a new one), and `submit` returns only once the broker confirmed it has the
message. The request is described by services/intake/submission.schema.json.
"""
from __future__ import annotations

import json
import uuid

import pika

EXCHANGE = "intake.submissions"


class IntakeClient:
    def __init__(self, amqp_url: str, source: str = "outside-system"):
        self._params = pika.URLParameters(amqp_url)
        self._user = self._params.credentials.username
        self._source = source
        self._conn = None
        self._channel = None

    def __enter__(self) -> "IntakeClient":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        self._conn = pika.BlockingConnection(self._params)
        self._channel = self._conn.channel()
        self._channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True, passive=True)  # intake's
        self._channel.confirm_delivery()

    def submit(self, channel: str, request: dict, message_id: str | None = None,
               headers: dict | None = None, reply_to: str | None = None) -> str:
        """Publish one request; raises pika's UnroutableError/NackError if the broker refused it.

        With `reply_to` (a queue of yours, e.g. from `receipt_queue()`), intake answers there
        with a `submission_receipt` envelope: `{"data": {"message_id", "ticket_no", "status"}}`,
        status `received` or `merged` with the ticket number, or `rejected` with `ticket_no`
        null and a `reason` naming the field and what is wrong (the message went to intake's
        dead-letter queue and made no ticket: send it again corrected, the same message id will
        do). services/intake/receipt.schema.json describes all three.
        """
        message_id = message_id or str(uuid.uuid4())
        self._channel.basic_publish(
            exchange=EXCHANGE, routing_key=f"submit.{channel}",
            body=json.dumps(request, ensure_ascii=False).encode("utf-8"),
            properties=pika.BasicProperties(
                content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                message_id=message_id, app_id=self._source, user_id=self._user, headers=headers or {},
                reply_to=reply_to),
            mandatory=True)
        return message_id

    def receipt_queue(self) -> str:
        """A private queue for receipts, gone when this client disconnects."""
        return self._channel.queue_declare("", exclusive=True).method.queue

    def receipts(self, queue: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
        """Wait for `count` receipts on `queue` (fewer if `timeout` seconds pass with none)."""
        found = []
        for method, _props, body in self._channel.consume(queue, inactivity_timeout=timeout):
            if method is None:
                break
            self._channel.basic_ack(method.delivery_tag)
            found.append(json.loads(body))
            if len(found) >= count:
                break
        self._channel.cancel()
        return found

    def publish_raw(self, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Send bytes as they are (for tests of what intake does with bad input), as this client's login."""
        if properties.user_id is None:
            properties.user_id = self._user
        self._channel.basic_publish(EXCHANGE, routing_key, body, properties, mandatory=True)

    def close(self) -> None:
        if self._conn is not None and self._conn.is_open:
            self._conn.close()
        self._conn = self._channel = None

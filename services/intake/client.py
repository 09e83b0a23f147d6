"""The small client outside systems use to publish requests to intake (pika).

    with IntakeClient("amqp://guest:guest@127.0.0.1:5672/") as client:
        message_id = client.submit("hotline", {...})

Messages are persistent, carry content type, the publisher's broker login as
`user_id` (the broker checks it; intake knows publishers by it) and a message id
(the idempotency key, per publisher: re-send with the same id after a doubt,
never a new one), and `submit` returns only once the broker confirmed it has the
message. The request is described by services/intake/submission.schema.json.

When the connection is lost (a broker restarted, a node of a cluster gone, the connection closed by
the broker), `submit` connects again, to the next of the URLs given when there are several, and sends
the same message again with the same message id, until the broker confirms it or `patience` seconds
have passed: a message is confirmed, or `submit` raises. A message the broker took but whose confirm
was lost is sent twice; intake makes one ticket of it (the message id). A refusal by the broker
(unroutable, nacked) is not retried: it raises at once.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

import pika
from pika.exceptions import (AMQPConnectionError, AuthenticationError, ChannelWrongStateError, NackError,
                             ProbableAccessDeniedError, ProbableAuthenticationError, UnroutableError)

log = logging.getLogger(__name__)

EXCHANGE = "intake.submissions"


class IntakeClient:
    def __init__(self, amqp_url: str | list[str], source: str = "outside-system", patience: float = 60.0):
        # several brokers (a cluster's nodes): a list, or one string separated by `;` as kombu takes them
        urls = [u.strip() for u in amqp_url.split(";") if u.strip()] if isinstance(amqp_url, str) else list(amqp_url)
        self._all_params = [pika.URLParameters(url) for url in urls]
        self._next = 0
        self._params = self._all_params[0]
        self._user = self._params.credentials.username
        self._source = source
        self._patience = patience
        self._conn = None
        self._channel = None
        self.reconnects = 0

    def __enter__(self) -> "IntakeClient":
        self._confirmed(lambda: None)  # connected: to the first URL that answers, within `patience`
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        self._params = self._all_params[self._next % len(self._all_params)]
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
        body = json.dumps(request, ensure_ascii=False).encode("utf-8")
        properties = pika.BasicProperties(
            content_type="application/json", content_encoding="utf-8", delivery_mode=2,
            message_id=message_id, app_id=self._source, user_id=self._user, headers=headers or {},
            reply_to=reply_to)
        self._confirmed(lambda: self._channel.basic_publish(
            exchange=EXCHANGE, routing_key=f"submit.{channel}", body=body, properties=properties, mandatory=True))
        return message_id

    def _confirmed(self, publish) -> None:
        """Publish until the broker confirms, connecting again (to the next URL) when the connection is lost."""
        deadline, delay = time.monotonic() + self._patience, 0.2
        while True:
            try:
                if self._conn is None or not self._conn.is_open or self._channel is None or not self._channel.is_open:
                    self.connect()
                publish()
                return
            except (UnroutableError, NackError, AuthenticationError, ProbableAuthenticationError,
                    ProbableAccessDeniedError):
                raise  # the broker said no (or who are you): sending it again would not change its mind
            except (AMQPConnectionError, ChannelWrongStateError, ConnectionError, OSError) as exc:
                self._drop()
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("intake client: %s; connecting again in %.1f s", type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._next += 1
                self.reconnects += 1

    def _drop(self) -> None:
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:  # already broken: nothing to close cleanly
            pass
        self._conn = self._channel = None

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
        self._confirmed(lambda: self._channel.basic_publish(EXCHANGE, routing_key, body, properties, mandatory=True))

    def close(self) -> None:
        if self._conn is not None and self._conn.is_open:
            self._conn.close()
        self._conn = self._channel = None
